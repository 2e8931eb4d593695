"""Stage ``predict``: label posts with a model loaded through MLflow (msc/track/inference.py).

Without ``--input``: the dataset's unlabelled posts (test_without_label.txt, or a table's rows without
a label), written as ``guid,tag`` with every ``null`` replaced, in file order. With ``--input TABLE``:
every row of a table of posts, written as ``id,label,p_<label>...`` (and the explanation columns with
``--explain``, ``label_set`` with ``--coverage``, then ``used`` and ``input_note``: msc/model/usage.py) in
table order. ``--coverage C`` without ``--input`` writes each post's label set beside the course file
(``test_label_sets.csv``: ``guid,tag,label_set``), which keeps ``guid,tag``. Outputs are written
atomically; the predicted class distribution and what the predictions used (text+image, text only,
image only; the images that could not be used, first rows and why) are printed and logged to MLflow.
A batch in which more than predict.max_unusable_image_share of the images could not be used stops
(exit 2) before anything is written.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from msc.core.errors import UserError, cli, step
from msc.core.files import atomic_write_text, check_output_file
from msc.core.labels import probability_columns

if TYPE_CHECKING:  # the library (torch, pandas, mlflow) is imported after the arguments: --help answers at once
    import pandas as pd

    from msc.config import Config

TEST_LABELS = "test_with_label.txt"  # the default --out, in paths.results
TABLE_PREDICTIONS = "predictions.csv"  # the default --out with --input, in paths.results
EXPLANATIONS = "test_explanations.csv"  # written beside --out with --explain (without --input)
LABEL_SETS = "test_label_sets.csv"  # written beside --out with --coverage (without --input)


def write_labels(labels: pd.DataFrame, out: Path) -> None:
    """The course format, ``guid,tag``; a table's id with a comma or quote is quoted as CSV quotes it."""
    table = io.StringIO()
    csv.writer(table, lineterminator="\n").writerows([("guid", "tag"), *zip(labels["guid"], labels["tag"])])
    atomic_write_text(out, table.getvalue())


def distribution_table(predicted: pd.Series, names: tuple[str, ...]) -> tuple[Table, dict[str, int]]:
    counts = Counter(predicted)
    table = Table(title=f"predicted labels of {len(predicted)} posts")
    table.add_column("label")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for label in names:
        table.add_row(label, str(counts[label]), f"{counts[label] / max(len(predicted), 1):.1%}")
    return table, {label: counts[label] for label in names}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Label posts with a model from MLflow: the dataset's unlabelled "
                                     "posts, or any table of posts (--input).")
    parser.add_argument("--model-uri", default="models:/msc@production", help="models:/msc@production (the default: "
                        "the alias is the production model), models:/msc/<version>, runs:/<run id>/model or a local "
                        "model folder")
    parser.add_argument("--input", type=Path, help="a table of posts (.csv, .jsonl or .parquet; columns id, text or "
                        "text_path, image_path relative to its folder; data.columns renames them) to label instead "
                        "of the dataset's unlabelled posts")
    parser.add_argument("--out", type=Path, help=f"output file (default: <paths.results>/{TEST_LABELS}, or "
                        f"<paths.results>/{TABLE_PREDICTIONS} with --input)")
    parser.add_argument("--data-root", help="dataset folder (default: data.root in params.yaml)")
    parser.add_argument("--params", default="params.yaml", help="the configuration file (default: %(default)s)")
    parser.add_argument("--explain", action="store_true", help="also give each post's attr_text, attr_image (the "
                        "Shapley split of the predicted class's log-probability between text and image) and driver "
                        f"(predict.driver_margin in params.yaml): in {EXPLANATIONS} beside --out, or as columns of "
                        "--out with --input")
    parser.add_argument("--coverage", type=float, help="also give each post's conformal label set at this coverage, "
                        "strictly between 0 and 1 (e.g. 0.9: the set holds the true label of at least 90 %% of posts "
                        f"like the calibration rows): in {LABEL_SETS} beside --out, or as a label_set column of --out "
                        "with --input; labels joined by |")
    parser.add_argument("--class-conditional", action="store_true", help="with --coverage: that coverage for every "
                        "true label separately (larger sets for the labels the model confuses), not on average")
    parser.add_argument("--true-labels", type=Path, help="a CSV of guid,label for the predicted posts (the offline "
                        "sample's data/cues.csv): also report accuracy, calibration error and log loss against it; with --input, "
                        "the table's own labels are used when it has some")
    args = parser.parse_args(argv)
    if args.coverage is not None and not 0 < args.coverage < 1:
        raise UserError(f"--coverage is {args.coverage}; it must be strictly between 0 and 1, e.g. 0.9")
    if args.class_conditional and args.coverage is None:
        raise UserError("--class-conditional applies to label sets: give --coverage too, e.g. --coverage 0.9")
    for flag, path in (("--input", args.input), ("--true-labels", args.true_labels)):
        if path is not None and not path.is_file():  # before the configuration and the model are looked for
            raise UserError(f"{flag} {path}: no such file" + (" (it is a folder)" if path.is_dir() else "")
                            + "; give the path of an existing file")
    return args


def checked_usage(predicted: pd.DataFrame, config: Config) -> dict[str, int]:
    """Prints what the predictions used (text+image, text only, ...; the images that could not be used)
    and returns the counts; refuses the batch, before anything is written, when more than
    predict.max_unusable_image_share of its images could not be used."""
    from msc.track.inference import image_usage

    counts, report, refusal = image_usage(predicted, config.predict.max_unusable_image_share)
    print(report)
    if refusal:
        raise UserError(refusal)
    return counts


def output_path(args: argparse.Namespace, config: Config) -> Path:
    """--out, or the default file under paths.results (the course file, or the table's predictions)."""
    return args.out or Path(config.paths.results) / (TABLE_PREDICTIONS if args.input is not None else TEST_LABELS)


def refuse_input_as_out(args: argparse.Namespace, config: Config) -> None:
    """Stop before --out replaces what predict reads: the --input table, or the dataset's own files."""
    if args.out is None:
        return
    from msc.data.dataset import TEST_FILE, listing_file

    if args.input is not None:
        inputs = {args.input: "the --input table itself"}
    else:
        root = Path(args.data_root or config.data.root)
        source = replace(config.data.source, root=root)
        inputs = {listing_file(source): "a file of the dataset", root / TEST_FILE: "a file of the dataset"}
    for path, what in inputs.items():
        if args.out.resolve() == path.resolve():
            raise UserError(f"--out {args.out} is {what}, which predict reads; write the predictions to another file")


def label_posts(args: argparse.Namespace, config: Config, model) -> tuple[pd.DataFrame, Path, dict[str, str], dict]:
    """The predictions (id, label, p_<label>..., explanations, label_set, used, input_note), where they
    were written, the labels the input already had (id -> label: an --input table's labelled rows) and the
    counts of what the predictions used."""
    from msc.model.explain import EXPLANATION_COLUMNS
    from msc.track.inference import LABEL_SET, inference_params, model_labels, predict_table, predict_test_set

    params = inference_params(config.predict.driver_margin if args.explain else None, args.coverage,
                              args.class_conditional)
    if args.input is not None:
        with step(f"labelling the posts of {args.input}"):
            predicted, truth = predict_table(model, args.input, config.data.columns, config.data.text_encoding, params)
        usage = checked_usage(predicted, config)
        out = output_path(args, config)
        atomic_write_text(out, predicted.to_csv(index=False, float_format="%.6f"))
        return predicted, out, truth, usage
    source = config.data.source if args.data_root is None else replace(config.data.source, root=Path(args.data_root))
    with step("labelling the test set"):
        labels = predict_test_set(model, source, config.data.text_encoding, params)
    usage = checked_usage(labels.rename(columns={"guid": "id"}), config)
    out = output_path(args, config)
    write_labels(labels, out)  # the course's guid,tag format, with or without --explain and --coverage
    if args.explain:
        explanations = labels[["guid", "tag", *probability_columns(model_labels(model)), *EXPLANATION_COLUMNS]]
        atomic_write_text(out.with_name(EXPLANATIONS), explanations.to_csv(index=False, float_format="%.6f"))
    if args.coverage is not None:
        atomic_write_text(out.with_name(LABEL_SETS), labels[["guid", "tag", LABEL_SET]].to_csv(index=False))
    return labels.rename(columns={"guid": "id", "tag": "label"}), out, {}, usage


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import mlflow

    from msc.config import load_config
    from msc.core.errors import log_crashes_in
    from msc.track.inference import load_model, model_labels, registry_warning
    from msc.track.store import setup_mlflow

    config = load_config(args.params)
    log_crashes_in(config.paths.logs)
    refuse_input_as_out(args, config)
    check_output_file(output_path(args, config), "--out")  # before the model is loaded

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
        predicted, out, given, usage = label_posts(args, config, model)
    finally:
        logger.removeHandler(handler)
    names = model_labels(model)
    table, counts = distribution_table(predicted["label"], names)
    Console().print(table)
    scores, truth_name = scores_of(args, predicted, names, given)
    with mlflow.start_run(experiment_id=experiment_id, run_name="predict", tags={"model_uri": args.model_uri}):
        mlflow.log_metrics({**{f"predicted_{label}": count for label, count in counts.items()}, **usage,
                            **{key: value for key, value in scores.items() if not isinstance(value, list)}})
        mlflow.log_artifact(str(out))
        beside = [(what, out.with_name(name)) for what, name, asked in (
            ("explanations", EXPLANATIONS, args.explain), ("label sets", LABEL_SETS, args.coverage is not None))
            if asked and args.input is None]
        for _, path in beside:
            mlflow.log_artifact(str(path))
    beside = [f"their {what} to {path}" for what, path in beside]
    print(f"wrote {len(predicted)} labels to {out}" + "".join(f" and {line}" for line in beside))
    if scores:
        low, high = scores["test_ece_ci95"]
        print(f"against {truth_name}: accuracy {scores['test_accuracy']:.4f}, expected calibration error "
              f"{scores['test_ece']:.4f} [{low:.4f}, {high:.4f}] (10 bins of the top probability; 95 % bootstrap "
              f"interval), log loss {scores['test_log_loss']:.4f} on {int(scores['test_scored'])} posts"
              + (f"; the label sets at coverage {args.coverage} held the true label of {scores['test_coverage']:.3f} "
                 f"of them (mean set size {scores['test_mean_set_size']:.2f})" if "test_coverage" in scores else ""))
    return 0


def scores_of(args: argparse.Namespace, predicted: pd.DataFrame, names: tuple[str, ...],
              given: dict[str, str]) -> tuple[dict, str]:
    """Accuracy and calibration against --true-labels, else the labels an --input table ``given``; none
    without either."""
    from msc.track.inference import read_truth
    from msc.train.calibration import score_against

    if args.true_labels is not None:
        truth = read_truth(args.true_labels, predicted["id"].tolist())
        return score_against(predicted, truth, names, f"--true-labels '{args.true_labels}'"), str(args.true_labels)
    if given:
        return score_against(predicted, given, names, f"'{args.input}'"), (
            f"the labelled rows of {args.input} (any the model trained on included: not a held-out score)")
    return {}, ""


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
