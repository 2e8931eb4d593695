"""Stage ``export``: a model from MLflow as a self-contained onnxruntime bundle.

``python -m src.export --model-uri models:/msc@production --out DIR`` writes the backbone's two towers
and the head as ONNX, the tokenizer, the preprocessing constants, the labels and calibration, the
sha256 of every file and ``DIR/predict.py``, which labels a table of posts with onnxruntime, numpy,
pillow and tokenizers alone (msc/model/onnx_bundle.py says what each file holds). Needs the ``onnx``
extra (``pip install -e '.[onnx]'``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from msc.core.errors import UserError, cli, step


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Export a model from MLflow as an onnxruntime bundle with a "
                                     "reference script that needs neither torch nor msc.")
    parser.add_argument("--model-uri", default="models:/msc@production", help="models:/msc@production (the default), "
                        "models:/msc/<version>, runs:/<run id>/model or a local model folder")
    parser.add_argument("--out", type=Path, required=True, help="the bundle's folder (replaced whole if it exists)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import onnx  # noqa: F401 - the TorchScript exporter needs it
        import onnxscript  # noqa: F401 - the exporter of the token heads needs it
    except ImportError as error:
        raise UserError(f"src.export needs the onnx extra ({error.name} is missing): pip install -e '.[onnx]'") from None
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is a file; name a folder for the bundle")
    from msc.track.export import export_model
    from msc.track.store import setup_mlflow

    setup_mlflow()
    with step(f"exporting {args.model_uri}"):
        out = export_model(args.model_uri, args.out)
    print(f"wrote the bundle of {args.model_uri} to {out}; label a table of posts with "
          f"`python {out / 'predict.py'} --input TABLE --out FILE`")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
