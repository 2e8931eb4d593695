"""Stage ``predict``: label test_without_label.txt with a model loaded through MLflow.

Accepts ``models:/msc/Production``, ``models:/msc@production``, ``runs:/<id>/model`` or a local
model folder. Writes ``guid,tag`` with every ``null`` replaced, in the test file's order,
atomically; prints the predicted class distribution and logs it to MLflow.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from src import LABELS
from src.config import load_config
from src.data import decode_text, load_dataset
from src.errors import UserError, cli, step
from src.io import atomic_write_text
from src.tracking import setup_mlflow

DEFAULT_OUT = Path("results/test_with_label.txt")


def registered_models_listing() -> str:
    """'msc (versions 1, 2; production -> 2)', for error messages."""
    from mlflow import MlflowClient

    client = MlflowClient()
    entries = []
    for model in client.search_registered_models():
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{model.name}'"))
        aliases = ", ".join(f"{alias} -> {version}" for alias, version in (model.aliases or {}).items())
        entries.append(f"{model.name} (versions {', '.join(map(str, versions))}{'; ' + aliases if aliases else ''})")
    return "; ".join(entries) or "none registered yet (run `python -m src.tune` first)"


def load_model(model_uri: str):
    """The model, as a trusted caller: it reads the test set's image files by path."""
    import mlflow

    try:
        return mlflow.pyfunc.load_model(model_uri, model_config={"trusted_input": True})
    except (mlflow.exceptions.MlflowException, OSError) as error:
        reason = str(error).splitlines()[0][:200]
        raise UserError(
            f"cannot load model '{model_uri}' ({reason}); registered models: {registered_models_listing()}"
        ) from None


def predict_test_set(model, data_root: str, text_encoding: str = "auto") -> pd.DataFrame:
    """(guid, tag, p_positive, p_neutral, p_negative) for every test guid, in file order.

    No test sample is dropped: one whose text or image file is missing or unreadable is
    predicted from the other modality, and flagged on stderr (the model logs unreadable images).
    """
    dataset = load_dataset(data_root, require_test_files=False)
    for sample in dataset.test:
        lacking = [p.name for p in (sample.text_path, sample.image_path) if not p.is_file()]
        if lacking:
            print(f"warning: test guid {sample.guid} has no {' or '.join(lacking)}; predicted from what it has",
                  file=sys.stderr)
    frame = pd.DataFrame(
        {"text": [decode_text(s.text_path.read_bytes(), text_encoding)[0] if s.text_path.is_file() else None
                  for s in dataset.test],
         "image": [str(s.image_path) for s in dataset.test]},
        index=[s.guid for s in dataset.test],  # the model's warnings name rows by guid
    )
    predictions = model.predict(frame)
    return pd.DataFrame({"guid": [s.guid for s in dataset.test], "tag": predictions["label"].tolist(),
                         **{f"p_{label}": predictions[f"p_{label}"].to_numpy() for label in LABELS}})


def score_against(labels: pd.DataFrame, truth_file: Path) -> dict[str, float]:
    """Accuracy and expected calibration error of the predictions against ``truth_file``, a CSV
    with ``guid`` and ``label`` columns (the offline sample's ``data/cues.csv`` has them)."""
    from src.calibration import expected_calibration_error

    try:
        with truth_file.open(newline="") as handle:
            truth = {row["guid"]: row["label"] for row in csv.DictReader(handle)}
    except (OSError, KeyError) as error:
        raise UserError(f"--true-labels '{truth_file}' cannot be read as a CSV with guid and label columns "
                        f"({error})") from None
    missing = [guid for guid in labels["guid"] if truth.get(guid) not in LABELS]
    if missing:
        raise UserError(f"--true-labels '{truth_file}' has no positive/neutral/negative label for {len(missing)} test "
                        f"guids ({', '.join(missing[:5])}); it needs one for every guid of test_without_label.txt")
    actual = np.array([LABELS.index(truth[guid]) for guid in labels["guid"]])
    probs = labels[[f"p_{label}" for label in LABELS]].to_numpy()
    return {"test_accuracy": float((probs.argmax(1) == actual).mean()),
            "test_ece": expected_calibration_error(probs, actual)}


def write_labels(labels: pd.DataFrame, out: Path) -> None:
    atomic_write_text(out, "guid,tag\n" + "".join(f"{g},{t}\n" for g, t in zip(labels["guid"], labels["tag"])))


def distribution_table(labels: pd.DataFrame) -> tuple[Table, dict[str, int]]:
    counts = Counter(labels["tag"])
    table = Table(title=f"predicted labels of {len(labels)} test samples")
    table.add_column("label")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for label in LABELS:
        table.add_row(label, str(counts[label]), f"{counts[label] / max(len(labels), 1):.1%}")
    return table, {label: counts[label] for label in LABELS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Label test_without_label.txt with a model from MLflow.")
    parser.add_argument("--model-uri", required=True, help="models:/msc/Production, models:/msc@production, "
                        "runs:/<run id>/model or a local model folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data-root", help="dataset folder (default: data.root in params.yaml)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--true-labels", type=Path, help="a CSV of guid,label for the test guids (the offline "
                        "sample's data/cues.csv): also report accuracy and calibration error against it")
    args = parser.parse_args(argv)
    config = load_config(args.params)
    import mlflow

    with step(f"loading the model {args.model_uri}"):
        experiment_id = setup_mlflow()
        model = load_model(args.model_uri)
    # The model flags unreadable inputs on logger "msc.serving"; show those lines on stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    logger = logging.getLogger("msc")
    logger.addHandler(handler)
    try:
        with step("labelling the test set"):
            labels = predict_test_set(model, args.data_root or config.data.root, config.data.text_encoding)
    finally:
        logger.removeHandler(handler)
    write_labels(labels, args.out)
    table, counts = distribution_table(labels)
    Console().print(table)
    scores = score_against(labels, args.true_labels) if args.true_labels else {}
    with mlflow.start_run(experiment_id=experiment_id, run_name="predict", tags={"model_uri": args.model_uri}):
        mlflow.log_metrics({**{f"predicted_{label}": count for label, count in counts.items()}, **scores})
        mlflow.log_artifact(str(args.out))
    print(f"wrote {len(labels)} labels to {args.out}")
    if scores:
        print(f"against {args.true_labels}: accuracy {scores['test_accuracy']:.4f}, expected calibration error "
              f"{scores['test_ece']:.4f} (10 bins of the top probability) on {len(labels)} test samples")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
