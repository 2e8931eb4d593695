"""Stage ``predict``: label test_without_label.txt with a model loaded through MLflow (msc/track/inference.py).

Writes ``guid,tag`` with every ``null`` replaced, in the test file's order, atomically; prints the
predicted class distribution and logs it to MLflow.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from msc.config import load_config
from msc.core.errors import cli, step
from msc.core.files import atomic_write_text
from msc.core.labels import LABELS
from msc.model.explain import EXPLANATION_COLUMNS
from msc.track.inference import load_model, predict_test_set, registry_warning, score_against
from msc.track.store import setup_mlflow

DEFAULT_OUT = Path("results/test_with_label.txt")
EXPLANATIONS = "test_explanations.csv"  # written beside --out with --explain


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
    parser.add_argument("--model-uri", default="models:/msc@production", help="models:/msc@production (the default: "
                        "the alias is the production model), models:/msc/<version>, runs:/<run id>/model or a local "
                        "model folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data-root", help="dataset folder (default: data.root in params.yaml)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--explain", action="store_true", help=f"also write {EXPLANATIONS} beside --out: each "
                        "test post's attr_text, attr_image (the Shapley split of the predicted class's log-probability "
                        "between text and image) and driver (predict.driver_margin in params.yaml)")
    parser.add_argument("--true-labels", type=Path, help="a CSV of guid,label for the test guids (the offline "
                        "sample's data/cues.csv): also report accuracy and calibration error against it")
    args = parser.parse_args(argv)
    config = load_config(args.params)
    import mlflow

    with step(f"loading the model {args.model_uri}"):
        experiment_id = setup_mlflow()
        model = load_model(args.model_uri)
        if (warning := registry_warning(args.model_uri)) is not None:
            print(f"warning: {warning}", file=sys.stderr)
    # The model flags unreadable inputs on logger "msc.serving"; show those lines on stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    logger = logging.getLogger("msc")
    logger.addHandler(handler)
    try:
        with step("labelling the test set"):
            labels = predict_test_set(model, args.data_root or config.data.root, config.data.text_encoding,
                                      config.predict.driver_margin if args.explain else None)
    finally:
        logger.removeHandler(handler)
    write_labels(labels, args.out)  # the course's guid,tag format, with or without --explain
    if args.explain:
        explanations = labels[["guid", "tag", *(f"p_{label}" for label in LABELS), *EXPLANATION_COLUMNS]]
        atomic_write_text(args.out.with_name(EXPLANATIONS), explanations.to_csv(index=False, float_format="%.6f"))
    table, counts = distribution_table(labels)
    Console().print(table)
    scores = score_against(labels, args.true_labels) if args.true_labels else {}
    with mlflow.start_run(experiment_id=experiment_id, run_name="predict", tags={"model_uri": args.model_uri}):
        mlflow.log_metrics({**{f"predicted_{label}": count for label, count in counts.items()},
                            **{key: value for key, value in scores.items() if not isinstance(value, list)}})
        mlflow.log_artifact(str(args.out))
    print(f"wrote {len(labels)} labels to {args.out}" + (f" and their explanations to "
                                                          f"{args.out.with_name(EXPLANATIONS)}" if args.explain else ""))
    if scores:
        print(f"against {args.true_labels}: accuracy {scores['test_accuracy']:.4f}, expected calibration error "
              f"{scores['test_ece']:.4f} [{scores['test_ece_ci95'][0]:.4f}, {scores['test_ece_ci95'][1]:.4f}] (10 "
              f"bins of the top probability; 95 % bootstrap interval) on {len(labels)} test samples")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
