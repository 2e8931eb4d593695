"""The ablation's rows: every head with the tuned hyperparameters, over several seeds, and the baselines.

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

import csv
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

from msc.config import Config, TrainConfig, with_overrides
from msc.core.errors import UserError
from msc.core.handoff import read_handoff
from msc.data.synthetic import bayes_predict, stored_story
from msc.features.cache import FeatureCache
from msc.features.splits import Splits
from msc.model.heads import HEADS
from msc.track.summary import TuneSummary
from msc.train.calibration import calibration_errors, fit_temperature, reliability, with_temperature
from msc.train.loop import predict_proba, train_head
from msc.train.metrics import classification_metrics, paired_bootstrap

PROBE_C = (0.01, 0.1, 1.0, 10.0, 100.0)


def metric_names(labels: tuple[str, ...]) -> tuple[str, ...]:
    """The scores every ablation row reports: overall, and the F1 of each label."""
    return ("accuracy", "weighted_f1", "macro_f1", *(f"f1_{label}" for label in labels))


def ablation_columns(labels: tuple[str, ...]) -> tuple[str, ...]:
    """ablation.csv's columns: each metric is the mean over seeds; <metric>_std its sample standard deviation."""
    return ("variant", "kind", "fusion", "seeds", *(c for m in metric_names(labels) for c in (m, f"{m}_std")),
            "weighted_f1_ci_low", "weighted_f1_ci_high", "trainable_params")


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # unimodal | fusion | augmentation | baseline
    train: TrainConfig | None = None  # None: not a trained head (the probe, the Bayes rule)


@dataclass
class VariantResult:
    variant: Variant
    scores: list[dict] = field(default_factory=list)  # holdout classification_metrics, one per seed
    probs: list[np.ndarray] = field(default_factory=list)  # (n_holdout, C) per seed; trained heads only
    val_probs: list[np.ndarray] = field(default_factory=list)  # (n_val, C) per seed; trained heads only
    predictions: list[np.ndarray] = field(default_factory=list)  # (n_holdout,) class ids per seed; every row
    histories: list[list[dict]] = field(default_factory=list)  # per-epoch scalars, one list per seed
    trainable_params: int | None = None
    first_head: torch.nn.Module | None = None  # the first seed's trained head, whose predictions the report explains
    started_ms: int = 0  # wall-clock span of the row's training and scoring, for its MLflow run
    ended_ms: int = 0


def tuned_train_config(config: Config, metrics_path: Path) -> tuple[TrainConfig, str]:
    """The ``train`` settings every row shares, and a sentence saying where they came from."""
    if not metrics_path.is_file():
        return config.train, f"params.yaml's `train` section (there is no {metrics_path} from the tune stage)"
    summary = read_handoff(TuneSummary, metrics_path)
    try:
        tuned = with_overrides(config, summary.best_params).train
    except UserError as error:
        raise UserError(f"{metrics_path}: best_params do not fit params.yaml ({error}); re-run `dvc repro tune`") from None
    return tuned, (f"the best trial (#{summary.best_trial}) of Optuna study `{summary.study_name}`, "
                   f"read from {metrics_path}")


def make_variants(train: TrainConfig, augment_views: int, text_augment_views: int = 0) -> list[Variant]:
    """Text only, image only, each fusion type, and the tuned fusion with its image augmentation
    flipped, and its text augmentation flipped, where the cache holds such views."""
    variants = [Variant(f, "unimodal" if f in ("text", "image") else "fusion", replace(train, fusion=f)) for f in HEADS]
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
        result.scores.append(classification_metrics(labels, probs.argmax(1), cache.label_names))
        result.probs.append(probs)
        result.predictions.append(probs.argmax(1))
        result.val_probs.append(predict_proba(trained.head, cache, splits.val))
        result.histories.append(trained.history)
        if result.first_head is None:
            result.first_head = trained.head
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
        key=lambda model: classification_metrics(y_val, model.predict(x_val), cache.label_names)["weighted_f1"],
    )
    predictions = best.predict(x_holdout)
    scores = classification_metrics(cache.labels[splits.holdout], predictions, cache.label_names)
    return VariantResult(Variant("logistic_probe", "baseline"), scores=[scores], predictions=[predictions])


def bayes_results(data_root: Path, cache: FeatureCache, rows: np.ndarray) -> list[VariantResult]:
    """On the synthetic sample, the Bayes rule's holdout scores with text, image and both cues."""
    cues_path = data_root / "cues.csv"
    if not cues_path.is_file():
        return []
    with cues_path.open(newline="") as handle:
        cues = {row["guid"]: row for row in csv.DictReader(handle)}
    guids = [cache.guids[i] for i in rows]
    story = stored_story(data_root)  # the sample's labels, prior and noises, from its bayes.json
    out = []
    for name, use_text, use_image in (("bayes:text", True, False), ("bayes:image", False, True), ("bayes:both", True, True)):
        predictions = [
            cache.label_names.index(bayes_predict(cues[g]["text_cue"] if use_text else None,
                                                  cues[g]["image_cue"] if use_image else None, **story))
            for g in guids
        ]
        scores = classification_metrics(cache.labels[rows], np.array(predictions), cache.label_names)
        out.append(VariantResult(Variant(name, "baseline"), scores=[scores], predictions=[np.array(predictions)]))
    return out


def timed(result: VariantResult, started: float) -> VariantResult:
    """``result`` with the wall-clock span from ``started`` (time.time()) to now."""
    result.started_ms, result.ended_ms = int(started * 1000), int(time.time() * 1000)
    return result


def summary_row(result: VariantResult, holdout_labels: np.ndarray, names: tuple[str, ...]) -> dict:
    """One CSV row: mean and sample standard deviation (ddof 1) of every metric over the seeds, and
    the 95 % bootstrap interval of the seed-mean weighted F1 over the holdout rows."""
    variant = result.variant
    row = {"variant": variant.name, "kind": variant.kind, "fusion": variant.train.fusion if variant.train else "",
           "seeds": len(result.scores), "trainable_params": result.trainable_params}
    for metric in metric_names(names):
        values = np.array([s[metric] for s in result.scores], dtype=float)  # an unmeasured F1 (None) is nan
        row[metric] = float(values.mean())
        row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
    row["weighted_f1_ci_low"], row["weighted_f1_ci_high"] = paired_bootstrap(holdout_labels, result.predictions)
    return row


def calibration_of(result: VariantResult, val_labels: np.ndarray, holdout_labels: np.ndarray) -> dict:
    """The first seed's temperature, fitted on validation (the report's quick view; the registered model's is
    fitted on out-of-fold rows), and its holdout reliability before and after."""
    temperature = fit_temperature(result.val_probs[0], val_labels)
    raw = result.probs[0]
    return {**calibration_errors(raw, holdout_labels, temperature), "before": reliability(raw, holdout_labels),
            "after": reliability(with_temperature(raw, temperature), holdout_labels)}
