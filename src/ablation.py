"""Stage ``ablation``: every head over several seeds on the untouched holdout and an error analysis,
logged under one MLflow parent run named ``ablation``. The ``report`` stage (src/report.py) turns
its outputs into ``results/report.md``, so a wording fix there retrains nothing.

Same budget and hyperparameters for every trained row: the tuned ones (the best trial's, read
from ``results/metrics.json``, which the tune stage writes; params.yaml's ``train`` section when
there is none), with only ``train.fusion`` changed, or ``train.use_augmented_views`` for the
augmentation row. Every row trains with the same epochs, patience and batch size on the same
training split, selects its epoch on the same validation split, and is scored once per seed on
the same holdout rows. Seeds ``train.seed + 0 .. ablation.seeds - 1`` change the head's
initialisation, the batch order, the sampled views and the modality dropout; never the splits.

Baselines: a logistic-regression probe on the pooled features (C chosen on validation), and on
the synthetic sample the Bayes-optimal rule on the same holdout rows.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

from src import LABELS
from src.calibration import calibration_errors, fit_temperature, reliability, with_temperature
from src.config import FUSIONS, Config, DataConfig, TrainConfig, flatten, load_config, with_overrides
from src.data import decode_text, load_dataset
from src.errors import UserError, cli, step
from src.features import FeatureCache, open_cache
from src.io import atomic_write_text
from src.metrics import classification_metrics, paired_bootstrap
from src.split import Splits, load_splits
from src.tracking import git_commit
from src.train import predict_proba, train_head

PROBE_C = (0.01, 0.1, 1.0, 10.0, 100.0)
METRICS = ("accuracy", "weighted_f1", "macro_f1", *(f"f1_{label}" for label in LABELS))
# Each metric column is the mean over seeds; <metric>_std its sample standard deviation.
COLUMNS = ("variant", "kind", "fusion", "seeds", *(c for m in METRICS for c in (m, f"{m}_std")),
           "weighted_f1_ci_low", "weighted_f1_ci_high", "trainable_params")
BAD_CASE_COLUMNS = ("guid", "kind", "true_label", "predicted_label", *(f"p_{label}" for label in LABELS),
                    "text_only_prediction", "image_only_prediction", "image_path", "text")
ERROR_KINDS = ("low_quality_image", "modality_conflict", "ambiguous_neutral", "low_confidence", "confident_error")
SHARPNESS_DECILE = 10  # an image in the dataset's lowest 10 % of sharpness counts as low quality
RESULTS = Path("results")
DETAILS = "ablation.json"  # what the report stage reads besides the CSVs


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # unimodal | fusion | augmentation | baseline
    train: TrainConfig | None = None  # None: not a trained head (the probe, the Bayes rule)


@dataclass
class VariantResult:
    variant: Variant
    scores: list[dict] = field(default_factory=list)  # holdout classification_metrics, one per seed
    probs: list[np.ndarray] = field(default_factory=list)  # (n_holdout, 3) per seed; trained heads only
    val_probs: list[np.ndarray] = field(default_factory=list)  # (n_val, 3) per seed; trained heads only
    predictions: list[np.ndarray] = field(default_factory=list)  # (n_holdout,) class ids per seed; every row
    histories: list[list[dict]] = field(default_factory=list)  # per-epoch scalars, one list per seed
    trainable_params: int | None = None
    started_ms: int = 0  # wall-clock span of the row's training and scoring, for its MLflow run
    ended_ms: int = 0


def tuned_train_config(config: Config, metrics_path: Path) -> tuple[TrainConfig, str]:
    """The ``train`` settings every row shares, and a sentence saying where they came from."""
    if not metrics_path.is_file():
        return config.train, f"params.yaml's `train` section (there is no {metrics_path} from the tune stage)"
    summary = json.loads(metrics_path.read_text())
    best = summary.get("best_params", {})
    try:
        tuned = with_overrides(config, best).train
    except UserError as error:
        raise UserError(f"{metrics_path}: best_params do not fit params.yaml ({error}); re-run `dvc repro tune`") from None
    return tuned, (f"the best trial (#{summary['best_trial']}) of Optuna study `{summary['study_name']}`, "
                   f"read from {metrics_path}")


def make_variants(train: TrainConfig, augment_views: int, text_augment_views: int = 0) -> list[Variant]:
    """Text only, image only, each fusion type, and the tuned fusion with its image augmentation
    flipped, and its text augmentation flipped, where the cache holds such views."""
    variants = [Variant(f, "unimodal" if f in ("text", "image") else "fusion", replace(train, fusion=f)) for f in FUSIONS]
    if augment_views:
        flipped = not train.use_augmented_views
        name = f"{train.fusion}:{'views' if flipped else 'no_views'}"
        variants.append(Variant(name, "augmentation", replace(train, use_augmented_views=flipped)))
    if text_augment_views:
        flipped = not train.use_text_views
        name = f"{train.fusion}:{'text_views' if flipped else 'no_text_views'}"
        variants.append(Variant(name, "augmentation", replace(train, use_text_views=flipped)))
    return variants


def train_variant(variant: Variant, cache: FeatureCache, splits: Splits, seeds: int) -> VariantResult:
    result = VariantResult(variant)
    labels = cache.labels[splits.holdout]
    for offset in range(seeds):
        trained = train_head(cache, splits.train, splits.val, replace(variant.train, seed=variant.train.seed + offset))
        probs = predict_proba(trained.head, cache, splits.holdout)
        result.scores.append(classification_metrics(labels, probs.argmax(1)))
        result.probs.append(probs)
        result.predictions.append(probs.argmax(1))
        result.val_probs.append(predict_proba(trained.head, cache, splits.val))
        result.histories.append(trained.history)
    result.trainable_params = sum(p.numel() for p in trained.head.parameters() if p.requires_grad)
    return result


def probe_features(cache: FeatureCache, rows: np.ndarray) -> np.ndarray:
    """(n, 2P): concatenated L2-normalised pooled text and image embeddings, clean views."""
    batch = cache.batch(rows)
    return np.concatenate([normalize(batch.text_pooled.cpu().numpy()), normalize(batch.image_pooled.cpu().numpy())],
                          axis=1)


def linear_probe(cache: FeatureCache, splits: Splits) -> VariantResult:
    """Logistic regression on pooled features, C by validation weighted F1. Deterministic: one run."""
    x_train, x_val, x_holdout = (probe_features(cache, rows) for rows in (splits.train, splits.val, splits.holdout))
    y_train, y_val = cache.labels[splits.train], cache.labels[splits.val]
    best = max(
        (LogisticRegression(C=c, max_iter=5000).fit(x_train, y_train) for c in PROBE_C),
        key=lambda model: classification_metrics(y_val, model.predict(x_val))["weighted_f1"],
    )
    predictions = best.predict(x_holdout)
    scores = classification_metrics(cache.labels[splits.holdout], predictions)
    return VariantResult(Variant("logistic_probe", "baseline"), scores=[scores], predictions=[predictions])


def bayes_results(data_root: Path, cache: FeatureCache, rows: np.ndarray) -> list[VariantResult]:
    """On the synthetic sample, the Bayes rule's holdout scores with text, image and both cues."""
    cues_path = data_root / "cues.csv"
    if not cues_path.is_file():
        return []
    from src.sample import bayes_predict

    with cues_path.open(newline="") as handle:
        cues = {row["guid"]: row for row in csv.DictReader(handle)}
    guids = [cache.guids[i] for i in rows]
    out = []
    for name, use_text, use_image in (("bayes:text", True, False), ("bayes:image", False, True), ("bayes:both", True, True)):
        predictions = [
            LABELS.index(bayes_predict(cues[g]["text_cue"] if use_text else None, cues[g]["image_cue"] if use_image else None))
            for g in guids
        ]
        scores = classification_metrics(cache.labels[rows], np.array(predictions))
        out.append(VariantResult(Variant(name, "baseline"), scores=[scores], predictions=[np.array(predictions)]))
    return out


def timed(result: VariantResult, started: float) -> VariantResult:
    """``result`` with the wall-clock span from ``started`` (time.time()) to now."""
    result.started_ms, result.ended_ms = int(started * 1000), int(time.time() * 1000)
    return result


def summary_row(result: VariantResult, holdout_labels: np.ndarray) -> dict:
    """One CSV row: mean and sample standard deviation (ddof 1) of every metric over the seeds, and
    the 95 % bootstrap interval of the seed-mean weighted F1 over the holdout rows."""
    variant = result.variant
    row = {"variant": variant.name, "kind": variant.kind, "fusion": variant.train.fusion if variant.train else "",
           "seeds": len(result.scores), "trainable_params": result.trainable_params}
    for metric in METRICS:
        values = np.array([s[metric] for s in result.scores])
        row[metric] = float(values.mean())
        row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
    row["weighted_f1_ci_low"], row["weighted_f1_ci_high"] = paired_bootstrap(holdout_labels, result.predictions)
    return row


def calibration_of(result: VariantResult, val_labels: np.ndarray, holdout_labels: np.ndarray) -> dict:
    """The first seed's temperature, fitted on validation, and its holdout reliability before and after."""
    temperature = fit_temperature(result.val_probs[0], val_labels)
    raw = result.probs[0]
    return {**calibration_errors(raw, holdout_labels, temperature), "before": reliability(raw, holdout_labels),
            "after": reliability(with_temperature(raw, temperature), holdout_labels)}


def error_kind(true: int, predicted: int, confidence: float, text_only: int, image_only: int,
               low_confidence: float, low_quality: bool = False) -> str:
    """The first kind that applies, in ERROR_KINDS order, to one sample (the report also counts
    the kinds of the correctly classified samples, to compare each kind's share of the errors with
    its share of the holdout)."""
    if low_quality:
        return "low_quality_image"  # small or blurry: see low_quality_rows
    if text_only != image_only:
        return "modality_conflict"  # the text-only and image-only heads disagree
    if LABELS.index("neutral") in (true, predicted):
        return "ambiguous_neutral"
    if confidence < low_confidence:
        return "low_confidence"
    return "confident_error"


def low_quality_rows(cache: FeatureCache, rows: np.ndarray, min_short_side: int) -> np.ndarray:
    """(n,) bool: the image of each row is small (shorter side below ``min_short_side`` pixels) or
    blurry (sharpness in the lowest decile of every image in the cache), from featurize's manifest."""
    quality = cache.manifest["image_quality"]
    side, sharpness = np.array(quality["short_side"]), np.array(quality["sharpness"])
    threshold = np.percentile(sharpness[sharpness >= 0], SHARPNESS_DECILE)
    usable = side[rows] >= 0
    return usable & ((side[rows] < min_short_side) | (sharpness[rows] < threshold))


def sample_kinds(cache: FeatureCache, rows: np.ndarray, probs: np.ndarray, text_only: np.ndarray,
                 image_only: np.ndarray, low_quality: np.ndarray, low_confidence: float) -> list[str]:
    """``error_kind`` of every row, right or wrong; ``probs`` (n, 3), the others (n,)."""
    return [error_kind(int(cache.labels[row]), int(probs[i].argmax()), float(probs[i].max()), int(text_only[i]),
                       int(image_only[i]), low_confidence, bool(low_quality[i])) for i, row in enumerate(rows)]


def bad_cases(cache: FeatureCache, rows: np.ndarray, probs: np.ndarray, kinds: list[str], text_only: np.ndarray,
              image_only: np.ndarray, data: DataConfig) -> list[dict]:
    """Every misclassified holdout sample of ``probs`` (n, 3), with its kind, text and image path.

    ``text_only`` and ``image_only`` (n,) are the unimodal heads' predictions on the same rows.
    """
    samples = {s.guid: s for s in load_dataset(data.root, require_test_files=False).labelled}
    cases = []
    for i, row in enumerate(rows):
        true, predicted = int(cache.labels[row]), int(probs[i].argmax())
        if true == predicted:
            continue
        sample = samples[cache.guids[row]]
        cases.append({
            "guid": sample.guid,
            "kind": kinds[i],
            "true_label": LABELS[true],
            "predicted_label": LABELS[predicted],
            **{f"p_{label}": round(float(p), 4) for label, p in zip(LABELS, probs[i])},
            "text_only_prediction": LABELS[int(text_only[i])],
            "image_only_prediction": LABELS[int(image_only[i])],
            "image_path": str(sample.image_path),
            "text": " ".join(decode_text(sample.text_path.read_bytes(), data.text_encoding)[0].split()),  # one line
        })
    return sorted(cases, key=lambda case: (ERROR_KINDS.index(case["kind"]), -max(case[f"p_{x}"] for x in LABELS)))


def csv_text(rows: list[dict], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else (f"{row[k]:.4f}" if isinstance(row[k], float) else row[k])
                         for k in columns})
    return out.getvalue()


def log_to_mlflow(config: Config, results: list[VariantResult], rows: list[dict], files: list[Path],
                  tags: dict[str, str]) -> str:
    """An ``ablation`` parent run with the CSVs as artifacts, and one child run per row; returns
    the parent's id, where the report stage adds the report.

    The runs are logged after the training, with the start and end times it had, so that MLflow's
    durations show the training time, not the seconds spent logging.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from src.tracking import setup_mlflow

    experiment_id = setup_mlflow()
    client = MlflowClient()
    started = min(result.started_ms for result in results)
    parent = client.create_run(experiment_id, start_time=started, tags=tags, run_name="ablation").info.run_id
    client.log_batch(parent, params=[Param(k, str(v)) for k, v in flatten(config).items()
                                     if k.startswith(("data.", "ablation."))])
    for result, row in zip(results, rows):
        child = client.create_run(experiment_id, start_time=result.started_ms, run_name=f"ablation-{row['variant']}",
                                  tags={"mlflow.parentRunId": parent, "ablation_kind": row["kind"], **tags}).info.run_id
        params = [] if result.variant.train is None else [
            Param(f"train.{k}", str(v)) for k, v in asdict(result.variant.train).items()]
        metrics = [Metric(k, float(v), result.ended_ms, 0) for k, v in row.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
        metrics += [Metric(f"holdout_{m}", scores[m], result.ended_ms, step)  # one point per seed
                    for step, scores in enumerate(result.scores) for m in METRICS]
        client.log_batch(child, metrics=metrics, params=params)
        client.set_terminated(child, status="FINISHED", end_time=result.ended_ms)
    for path in files:
        client.log_artifact(parent, str(path))
    client.set_terminated(parent, status="FINISHED", end_time=max(result.ended_ms for result in results))
    return parent


def run_ablation(config: Config, cache: FeatureCache, metrics_path: Path, out_dir: Path) -> list[dict]:
    """Train and score every row, analyse the tuned head's errors, write every output."""
    splits = load_splits(config.data, cache)
    train, hyperparameter_source = tuned_train_config(config, metrics_path)
    results = []
    for variant in make_variants(train, cache.augment_views, cache.text_augment_views):
        started = time.time()
        result = train_variant(variant, cache, splits, config.ablation.seeds)
        results.append(timed(result, started))
        # A plain line per row: it shows in DVC's and CI's logs, where no terminal is attached.
        print(f"{variant.name}: {config.ablation.seeds} seeds in {time.time() - started:.1f}s, holdout weighted F1 "
              f"{np.mean([s['weighted_f1'] for s in result.scores]):.4f}", flush=True)
    started = time.time()
    results.append(timed(linear_probe(cache, splits), started))
    started = time.time()
    results.extend(timed(result, started) for result in bayes_results(Path(config.data.root), cache, splits.holdout))
    holdout_labels = cache.labels[splits.holdout]
    rows = [summary_row(result, holdout_labels) for result in results]

    by_name = {result.variant.name: result for result in results}
    analysed = by_name[train.fusion]  # the tuned configuration, first seed
    text_only, image_only = by_name["text"].probs[0].argmax(1), by_name["image"].probs[0].argmax(1)
    kinds = sample_kinds(cache, splits.holdout, analysed.probs[0], text_only, image_only,
                         low_quality_rows(cache, splits.holdout, config.ablation.low_quality_short_side),
                         config.ablation.low_confidence)
    cases = bad_cases(cache, splits.holdout, analysed.probs[0], kinds, text_only, image_only, config.data)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"ablation": out_dir / "ablation.csv", "bad_cases": out_dir / "bad_cases.csv",
             "details": out_dir / DETAILS}
    atomic_write_text(files["ablation"], csv_text(rows, COLUMNS))
    atomic_write_text(files["bad_cases"], csv_text(cases, BAD_CASE_COLUMNS))
    bayes_file = Path(config.data.root) / "bayes.json"
    tags = {"backbone": cache.manifest["backbone"], "feature_fingerprint": cache.fingerprint,
            "split_identity": splits.identity, "git_commit": git_commit()}
    if bayes_file.is_file():
        tags["expected_bayes_accuracy"] = json.dumps(json.loads(bayes_file.read_text())["bayes_accuracy"])
    run_id = log_to_mlflow(config, results, rows, [files["ablation"], files["bad_cases"]], tags)
    # Everything the report stage needs and the CSVs do not hold.
    details = {
        "context": {
            "backbone": cache.manifest["backbone"], "data_root": config.data.root, "n_labelled": cache.n_labelled,
            "n_train": len(splits.train), "n_val": len(splits.val), "n_holdout": len(splits.holdout),
            "augment_views": cache.augment_views, "text_augment_views": cache.text_augment_views,
            "feature_fingerprint": cache.fingerprint,
            "split_identity": splits.identity, "seeds": config.ablation.seeds, "train": asdict(train),
            "hyperparameter_source": hyperparameter_source, "low_confidence": config.ablation.low_confidence,
            "low_quality_short_side": config.ablation.low_quality_short_side,
            "git_commit": tags["git_commit"],
        },
        "rows": rows,
        "analysed": {"variant": analysed.variant.name, "scores": analysed.scores, "histories": analysed.histories,
                     "calibration": calibration_of(analysed, cache.labels[splits.val], holdout_labels)},
        # Class ids per seed on the holdout rows, for the report's paired comparisons.
        "holdout_labels": holdout_labels.tolist(),
        "holdout_kinds": {kind: kinds.count(kind) for kind in ERROR_KINDS},  # every holdout sample, right or wrong
        "predictions": {result.variant.name: [p.tolist() for p in result.predictions] for result in results},
        "mlflow_run_id": run_id,
    }
    atomic_write_text(files["details"], json.dumps(details, indent=1) + "\n")
    return rows


def print_table(rows: list[dict], title: str, console: Console) -> None:
    table = Table(title=title)
    for column in ("variant", "seeds", "accuracy", "weighted F1", "macro F1", "params"):
        table.add_column(column, justify="left" if column == "variant" else "right")

    def spread(row: dict, metric: str) -> str:
        std = row[f"{metric}_std"]
        return f"{row[metric]:.4f}" + ("" if std is None else f" ± {std:.4f}")

    for row in rows:
        table.add_row(row["variant"], str(row["seeds"]), spread(row, "accuracy"), spread(row, "weighted_f1"),
                      spread(row, "macro_f1"),
                      "" if row["trainable_params"] is None else f"{row['trainable_params']:,}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ablation, fusion comparison and error analysis on the holdout.")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--metrics", type=Path, default=RESULTS / "metrics.json",
                        help="the tune stage's summary, for the tuned hyperparameters (default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where the CSVs and ablation.json go")
    args = parser.parse_args(argv)
    config = load_config(args.params)
    cache = open_cache(config)
    console = Console()
    with step("training and scoring the ablation variants"):
        rows = run_ablation(config, cache, args.metrics, args.out_dir)
    print_table(rows, f"holdout, mean ± std over seeds ({cache.manifest['backbone']}, {config.data.root})", console)
    print(f"wrote {args.out_dir / 'ablation.csv'}, {args.out_dir / 'bad_cases.csv'} and {args.out_dir / DETAILS}; "
          "`python -m src.report` writes the report")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
