"""Peak memory of the served model under the documented request limits (issue 33, kind 6).

    python -m src.sample --no-data --backbone-shape vit-b-32 --backbone-out models/vit-b-32-random
    python -m benchmarks.serve_limits --backbone models/vit-b-32-random [--server mlflow]

``--clients`` clients (default 4) each send one request of ``--images`` JPEG images of ``--side`` pixels
square (default 9 of 6300x6300: inside MAX_IMAGE_PIXELS, MAX_IMAGE_BASE64_CHARS and MAX_REQUEST_PIXELS)
at once, to ``python -m src.serve`` (default) or ``mlflow models serve``, on 127.0.0.1 only, with one
worker. Prints each client's HTTP status and seconds, the server's peak resident memory (VmHWM of its
process tree) and its memory when idle before the load. The served model is an untrained ``late`` head
(memory does not depend on the weights), logged into a store under ``--work-dir``.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.processes import free_port, serve_guarded, serve_model, tree_peak_rss
from benchmarks.serve import log_served_model


def big_jpeg(side: int, seed: int) -> str:
    """A ``side``x``side`` JPEG of smooth noise, base64-encoded (a few MB, like a photo)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (side // 50 + 1, side // 50 + 1, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(small).resize((side, side), Image.BILINEAR).save(out, format="JPEG", quality=90)
    return base64.b64encode(out.getvalue()).decode()


def post(port: int, body: bytes, results: list, timeout: float) -> None:
    started = time.monotonic()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        status = f"no answer ({error})"
    results.append((status, round(time.monotonic() - started, 1)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Peak memory of the served model under the request limits.")
    parser.add_argument("--backbone", default="models/vit-b-32-random")
    parser.add_argument("--work-dir", type=Path, default=Path(".benchmark"))
    parser.add_argument("--server", choices=("src.serve", "mlflow"), default="src.serve")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--images", type=int, default=9)
    parser.add_argument("--side", type=int, default=6300)
    parser.add_argument("--timeout", type=float, default=60.0, help="the server's request timeout, seconds")
    args = parser.parse_args(argv)
    store = args.work_dir / "serve-limits"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    model_uri = log_served_model(store.resolve(), args.backbone)
    bodies = [json.dumps({"dataframe_split": {"columns": ["text", "image"], "data": [
        ["a photo", big_jpeg(args.side, client * 100 + i)] for i in range(args.images)]}}).encode()
        for client in range(args.clients)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{(store / 'mlflow.db').resolve()}",
           "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": str(int(args.timeout))}
    port = free_port()
    serve = (serve_guarded(model_uri, store, env, port, "--timeout", str(args.timeout)) if args.server == "src.serve"
             else serve_model(model_uri, store, env, port))
    with serve as server:
        results: list = []
        post(port, json.dumps({"dataframe_split": {"columns": ["text", "image"], "data": [
            ["warm up", big_jpeg(64, 0)]]}}).encode(), results, args.timeout)  # the model loads on first use
        idle = tree_peak_rss(server.pid)
        threads = [threading.Thread(target=post, args=(port, body, results, args.timeout + 120)) for body in bodies]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(5)  # work the server goes on with after answering shows in its peak too
        peak = tree_peak_rss(server.pid)
    print(f"{args.server}: {args.clients} clients x {args.images} images of {args.side}x{args.side} "
          f"({len(bodies[0]) / 2**20:.0f} MiB a request), timeout {args.timeout:g} s: answers {results[1:]} "
          f"in {time.monotonic() - started:.0f} s; server peak {peak / 2**30:.2f} GiB (after warm-up {idle / 2**30:.2f} GiB)")


if __name__ == "__main__":
    main()
