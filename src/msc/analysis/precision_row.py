"""``ablation.int8_row``: what onnxruntime's int8 towers (``model.precision: int8``) cost against fp32 features.

The tuned head is trained with the same seeds, splits and budget as every row on a second cache of the same
posts, whose features onnxruntime computed with the int8 towers (``<features.dir>-int8``, built and reused
by featurize's own rules). That row (``<fusion>:int8``, kind ``precision``) and the tuned fusion's row (the
fp32 reference) get the 95 % bootstrap interval of their seed-mean holdout accuracy and their holdout ECE
(first seed, temperature fitted on validation) with its interval; the int8 row also the paired interval of
its accuracy minus the reference's, on the same resampled holdout rows.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from msc.analysis.variants import Variant, VariantResult, calibration_of, timed, train_variant
from msc.config import Config, TrainConfig
from msc.core.errors import UserError
from msc.features.build import featurize
from msc.features.cache import FeatureCache
from msc.features.splits import Splits
from msc.model.devices import resolve_device, resolve_dtype
from msc.train.metrics import paired_bootstrap

PRECISION_COLUMNS = ("accuracy_ci_low", "accuracy_ci_high", "ece", "ece_ci_low", "ece_ci_high",
                     "accuracy_vs_fp32_ci_low", "accuracy_vs_fp32_ci_high")


def int8_folder(features_dir: str) -> Path:
    """Where the int8 twin of the cache in ``features_dir`` lies: beside it ("features/" too), never inside."""
    folder = Path(features_dir)
    return folder.with_name(folder.name + "-int8")


def int8_cache(config: Config, cache: FeatureCache) -> FeatureCache:
    """The int8 twin of ``cache`` (config's fp32 features), built when stale; a sentence when config's
    features are not fp32, which the row would then not compare with."""
    model = config.model
    fp32 = (model.runtime_precision == "fp32" if model.runtime == "onnxruntime"
            else resolve_dtype(model.precision, resolve_device(model.device)) == torch.float32)
    if not fp32:
        raise UserError(f"ablation.int8_row compares int8 features with fp32 ones, and model.runtime: {model.runtime} "
                        f"with model.precision: {model.precision} computes others here; set model.precision: fp32, "
                        "or ablation.int8_row: false")
    twin, _ = featurize(config.data, replace(model, runtime="onnxruntime", precision="int8", device="cpu"),
                        replace(config.features, dir=str(int8_folder(config.features.dir))))
    if twin.guids != cache.guids:  # the same posts in the same rows, or the splits do not carry over
        raise UserError(f"the int8 cache '{twin.folder}' holds other posts than '{cache.folder}'; run "
                        "`python -m src.featurize` and the ablation again")
    return twin


def int8_result(int8: FeatureCache, splits: Splits, train: TrainConfig, seeds: int) -> VariantResult:
    """The tuned head (``train``) trained and scored on the int8 cache, as every row is on the fp32 one."""
    started = time.time()
    return timed(train_variant(Variant(f"{train.fusion}:int8", "precision", train), int8, splits, seeds), started)


def precision_columns(result: VariantResult, holdout_labels: np.ndarray, val_labels: np.ndarray,
                      reference: VariantResult | None = None) -> dict:
    """The accuracy and ECE intervals of ``result``; against ``reference`` (fp32), its accuracy's cost."""
    low, high = paired_bootstrap(holdout_labels, result.predictions, metric="accuracy")
    calibration = calibration_of(result, val_labels, holdout_labels)
    columns = {"accuracy_ci_low": low, "accuracy_ci_high": high, "ece": calibration["ece"],
               "ece_ci_low": calibration["ece_ci95"][0], "ece_ci_high": calibration["ece_ci95"][1]}
    if reference is not None:
        columns["accuracy_vs_fp32_ci_low"], columns["accuracy_vs_fp32_ci_high"] = paired_bootstrap(
            holdout_labels, result.predictions, reference.predictions, metric="accuracy")
    return columns


def add_precision_columns(rows: list[dict], results: list[VariantResult], reference: VariantResult,
                          holdout_labels: np.ndarray, val_labels: np.ndarray) -> None:
    """Fill in the intervals of the fp32 ``reference`` row and of the int8 row, when the last row is that."""
    if not results or results[-1].variant.kind != "precision":
        return
    rows[results.index(reference)].update(precision_columns(reference, holdout_labels, val_labels))
    rows[-1].update(precision_columns(results[-1], holdout_labels, val_labels, reference))
