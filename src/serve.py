"""Stage command ``serve``: the model behind msc's guarded layer, for clients you do not trust.

    python -m src.serve --model-uri URI [--host 127.0.0.1] [--port 5000] [--workers N] [--timeout S]
                        [--concurrency C]

Runs uvicorn with ``msc.track.serving:create_app`` (MLflow's scoring app behind GuardedScoring), so the
endpoints and request formats are those of ``mlflow models serve``, plus: a missing or unsupported
Content-Type is 415, a body over msc.track.serving.MAX_BODY_BYTES is 413, JSON nested more than
MAX_JSON_DEPTH levels is 400, and a request still running at ``--timeout`` gets 504 and its work stops
at the model's next check, before the next batch. ``--concurrency`` requests per worker compute at
once; the others wait within their own timeout (503 when it passes). ``mlflow models serve`` keeps
working, without these guarantees (README, "Serving").
"""

from __future__ import annotations

import argparse
import os

from msc.core.errors import UserError, cli


def local_model(model_uri: str) -> str:
    """``model_uri`` fetched and checked once (msc.track.inference.checked_model: every file as logged, no
    bytecode caches; the workers then load the same folder), or a sentence naming it."""
    import mlflow

    from msc.track.inference import checked_model
    from msc.track.store import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    return str(checked_model(model_uri))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a model over HTTP with MLflow's endpoints, guarded for "
                                     "untrusted clients.")
    parser.add_argument("--model-uri", required=True, help="models:/msc@production, runs:/<id>/model or a folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1, help="processes, each with its own copy of the model")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a request may take (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=1, help="requests computed at once per worker")
    args = parser.parse_args(argv)
    for name in ("workers", "timeout", "concurrency"):
        if not getattr(args, name) > 0:
            raise UserError(f"--{name} is {getattr(args, name)}; it must be more than 0")
    if not 0 < args.port < 65536:
        raise UserError(f"--port is {args.port}; it must be between 1 and 65535")
    import uvicorn

    from msc.track.serving import ENV_CONCURRENCY, ENV_MODEL_URI, ENV_TIMEOUT  # mlflow: after the arguments

    os.environ.update({ENV_MODEL_URI: local_model(args.model_uri), ENV_TIMEOUT: str(args.timeout),
                       ENV_CONCURRENCY: str(args.concurrency)})  # read by each worker's create_app
    uvicorn.run("msc.track.serving:create_app", factory=True, host=args.host, port=args.port, workers=args.workers)
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
