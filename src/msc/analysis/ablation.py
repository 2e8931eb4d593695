"""The ablation stage's work: every row trained and scored, the tuned head's errors analysed, the
outputs written as one set, and an MLflow parent run named ``ablation`` with a child run per row.
The rows are in msc/analysis/variants.py, the error kinds in msc/analysis/error_kinds.py."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from msc.analysis.attribution import evidence, holdout_attribution
from msc.analysis.error_kinds import ERROR_KINDS, bad_case_columns, bad_cases, low_quality_rows, sample_kinds
from msc.analysis.precision_row import PRECISION_COLUMNS, add_precision_columns, int8_result
from msc.analysis.results import DETAILS, AblationResults, csv_text
from msc.analysis.variants import (
    VariantResult,
    ablation_columns,
    bayes_results,
    calibration_of,
    linear_probe,
    make_variants,
    metric_names,
    summary_row,
    timed,
    train_variant,
    tuned_train_config,
)
from msc.analysis.zero_shot import zero_shot
from msc.config import Config, TrainConfig, flatten
from msc.core.files import atomic_write_text
from msc.core.handoff import write_handoff
from msc.core.progress import progress_bars
from msc.data.dataset import load_dataset
from msc.features.cache import FeatureCache
from msc.features.splits import Splits, load_splits
from msc.track.store import git_commit, setup_mlflow


def log_to_mlflow(config: Config, results: list[VariantResult], rows: list[dict], files: list[Path],
                  tags: dict[str, str], labels: tuple[str, ...]) -> str:
    """An ``ablation`` parent run with the CSVs as artifacts, and one child run per row; returns
    the parent's id, where the report stage adds the report.

    The runs are logged after the training, with the start and end times it had, so that MLflow's
    durations show the training time, not the seconds spent logging.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

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
                    for step, scores in enumerate(result.scores) for m in metric_names(labels)]
        client.log_batch(child, metrics=metrics, params=params)
        client.set_terminated(child, status="FINISHED", end_time=result.ended_ms)
    for path in files:
        client.log_artifact(parent, str(path))
    client.set_terminated(parent, status="FINISHED", end_time=max(result.ended_ms for result in results))
    return parent


def train_rows(config: Config, cache: FeatureCache, splits: Splits, train: TrainConfig,
               int8: FeatureCache | None = None) -> list[VariantResult]:
    """Every trained row, then the probe, the zero-shot backbone and (on the synthetic sample) the Bayes rule;
    last, with ``int8`` (ablation.int8_row, msc/analysis/precision_row.py), the tuned head on its features."""
    results, variants = [], make_variants(train, cache.augment_views, cache.text_augment_views)
    with progress_bars() as bars:  # a bar on a terminal, else done/total and an estimate every 30 s
        seeds = f"{config.ablation.seeds} seed" + ("s" if config.ablation.seeds != 1 else "")
        task = bars.add_task(f"ablation rows ({seeds} each)", total=len(variants))
        for variant in variants:
            started = time.time()
            result = train_variant(variant, cache, splits, config.ablation.seeds)
            results.append(timed(result, started))
            # A plain line per row: it shows in DVC's and CI's logs, where no terminal is attached.
            print(f"{variant.name}: {seeds} in {time.time() - started:.1f}s, holdout weighted "
                  f"F1 {np.mean([s['weighted_f1'] for s in result.scores]):.4f}", flush=True)
            bars.advance(task)
    started = time.time()
    results.append(timed(linear_probe(cache, splits), started))
    started = time.time()
    results.append(timed(zero_shot(config, cache, splits.holdout), started))
    started = time.time()
    results.extend(timed(result, started) for result in bayes_results(Path(config.data.root), cache, splits.holdout))
    if int8 is not None:
        results.append(int8_result(int8, splits, train, config.ablation.seeds))
    return results


def explain_holdout(config: Config, cache: FeatureCache, splits: Splits, analysed: VariantResult,
                    kinds: list[str]) -> dict:
    """What drove the analysed head's holdout predictions: every row's modality attribution and,
    for a token head, the token and patch evidence of its most confident errors."""
    head, probs = analysed.first_head, analysed.probs[0]
    attr_text, attr_image = holdout_attribution(head, cache, splits.holdout)
    predicted = probs.argmax(1)
    correct = predicted == cache.labels[splits.holdout]
    summary = {"attr_text": attr_text.tolist(), "attr_image": attr_image.tolist(), "kinds": kinds,
               "correct": correct.tolist(), "predicted": predicted.tolist(),
               "driver_margin": config.predict.driver_margin, "evidence": [], "evidence_note": None}
    if not getattr(head, "head", head).uses_tokens:
        summary["evidence_note"] = (f"`{analysed.variant.name}` reads one pooled vector per modality: it has no "
                                    "tokens or patches to attribute a prediction to, only the two modalities")
        return summary
    worst = [i for i in np.argsort(-probs.max(1), kind="stable") if not correct[i]][: config.ablation.evidence_cases]
    samples = {s.guid: s for s in load_dataset(config.data.source, require_test_files=False).labelled}
    cases = [(splits.holdout[i], samples[cache.guids[splits.holdout[i]]]) for i in worst]
    summary["evidence"] = evidence(config, head, cache, cases, [int(predicted[i]) for i in worst])
    return summary


def run_ablation(config: Config, cache: FeatureCache, metrics_path: Path, out_dir: Path,
                 int8: FeatureCache | None = None) -> list[dict]:
    """Train and score every row (``int8``: ablation.int8_row's too), analyse the tuned head's errors, write every output."""
    splits = load_splits(config.data, cache)
    train, hyperparameter_source = tuned_train_config(config, metrics_path)
    results = train_rows(config, cache, splits, train, int8)
    holdout_labels = cache.labels[splits.holdout]
    rows = [summary_row(result, holdout_labels, cache.label_names) for result in results]
    by_name = {result.variant.name: result for result in results}
    analysed = by_name[train.fusion]  # the tuned configuration, first seed
    add_precision_columns(rows, results, analysed, holdout_labels, cache.labels[splits.val])
    text_only, image_only = by_name["text"].probs[0].argmax(1), by_name["image"].probs[0].argmax(1)
    kinds = sample_kinds(cache, splits.holdout, analysed.probs[0], text_only, image_only,
                         low_quality_rows(cache, splits.holdout, config.ablation.low_quality_short_side),
                         config.ablation.low_confidence)
    attribution = explain_holdout(config, cache, splits, analysed, kinds)
    cases = bad_cases(cache, splits.holdout, analysed.probs[0], kinds, text_only, image_only, config.data,
                      attribution)
    files = {"ablation": out_dir / "ablation.csv", "bad_cases": out_dir / "bad_cases.csv", "details": out_dir / DETAILS}
    tables = {"ablation": csv_text(rows, ablation_columns(cache.label_names) + (PRECISION_COLUMNS if int8 else ())),
              "bad_cases": csv_text(cases, bad_case_columns(cache.label_names))}
    tags = {"backbone": cache.manifest.backbone, "feature_fingerprint": cache.fingerprint,
            "split_identity": splits.identity, "git_commit": git_commit()}
    bayes_file = Path(config.data.root) / "bayes.json"
    if bayes_file.is_file():
        tags["expected_bayes_accuracy"] = json.dumps(json.loads(bayes_file.read_text())["bayes_accuracy"])
    context = {
        "backbone": cache.manifest.backbone, "data_root": config.data.root, "n_labelled": cache.n_labelled,
        "n_train": len(splits.train), "n_val": len(splits.val), "n_holdout": len(splits.holdout),
        "augment_views": cache.augment_views, "text_augment_views": cache.text_augment_views,
        "feature_fingerprint": cache.fingerprint, "split_identity": splits.identity, "seeds": config.ablation.seeds,
        "train": asdict(train), "hyperparameter_source": hyperparameter_source,
        "low_confidence": config.ablation.low_confidence,
        "low_quality_short_side": config.ablation.low_quality_short_side, "git_commit": tags["git_commit"],
        "labels": list(cache.label_names),
    }
    # The CSVs go to MLflow before they replace the old ones: every output of the stage is then
    # written in one short step at the end, ablation.json last, and it names (by sha256) the CSVs it
    # belongs to: a run killed between the renames leaves a set the report refuses, never one it mixes.
    staged = out_dir / ".ablation-staging"
    staged.mkdir(parents=True, exist_ok=True)
    for name in ("ablation", "bad_cases"):
        atomic_write_text(staged / files[name].name, tables[name])
    run_id = log_to_mlflow(config, results, rows, [staged / files[name].name for name in ("ablation", "bad_cases")],
                           tags, cache.label_names)
    details = AblationResults(
        context=context, rows=rows,
        analysed={"variant": analysed.variant.name, "scores": analysed.scores, "histories": analysed.histories,
                  "calibration": calibration_of(analysed, cache.labels[splits.val], holdout_labels)},
        holdout_labels=holdout_labels.tolist(),
        holdout_kinds={kind: kinds.count(kind) for kind in ERROR_KINDS},  # every holdout sample, right or wrong
        predictions={result.variant.name: [p.tolist() for p in result.predictions] for result in results},
        mlflow_run_id=run_id, bad_cases_sha256=hashlib.sha256(tables["bad_cases"].encode()).hexdigest(),
        ablation_sha256=hashlib.sha256(tables["ablation"].encode()).hexdigest(),
        attribution=attribution)
    for name in ("ablation", "bad_cases"):
        (staged / files[name].name).replace(files[name])
    write_handoff(files["details"], details, indent=1)
    staged.rmdir()
    return rows
