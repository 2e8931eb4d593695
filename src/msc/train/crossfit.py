"""Out-of-fold probabilities: rows that took no part in choosing the model, for calibration.

The registered head's validation rows chose its kept epoch and, among the trials, the head itself,
so its probabilities there are optimistic, and there are few of them (15 % of the labelled rows):
a temperature fitted on them follows their noise. Here the chosen configuration is trained again on
``folds`` stratified folds of train + validation, each for exactly the kept number of epochs (no
early stopping, no selection on the left-out fold), and every row of the pool is predicted by the one
model that never saw it. A calibrator fitted on those predictions sees, for every labelled row
outside the holdout, the probabilities of a model like the registered one on a row it did not train
on or choose by.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from sklearn.model_selection import StratifiedKFold

from msc.core.progress import progress_bars
from msc.features.cache import FeatureCache
from msc.features.splits import Splits
from msc.train.config import TrainConfig
from msc.train.loop import predict_proba, train_head


@dataclass(frozen=True)
class Refit:
    """The candidate's configuration, trained again on folds for its out-of-fold calibration rows."""

    config: TrainConfig  # the train section the candidate was trained with
    epochs: int  # its kept epoch: each fold trains exactly this long
    folds: int  # register.calibration_folds; 0 fits the temperature on the validation split
    seed: int  # data.split_seed, which draws the folds


@dataclass(frozen=True)
class CalibrationRows:
    """The rows registration fits the temperature, the probability rules and the label-issue ranking on."""

    rows: np.ndarray  # (n,) cache row ids: train + validation out of fold, or the validation split
    probs: np.ndarray  # (n, C) raw softmax of the model that did not train on each row (see out_of_fold)
    labels: np.ndarray  # (n,) their class ids
    out_of_fold: bool  # False: the candidate's own probabilities on the validation split, which chose it


def calibration_rows(head, cache: FeatureCache, splits: Splits, refit: Refit | None) -> CalibrationRows:
    """The out-of-fold predictions of train + validation that ``refit`` makes (with fewer folds than asked
    when the rarest class has fewer rows); with no ``refit``, 0 folds or a class of one row, ``head``'s
    predictions of the validation split, whose rows also chose the kept epoch and, with the other rows'
    help, the trial, so that its probabilities there are optimistic (README, issue 25)."""
    pool = np.concatenate([splits.train, splits.val])
    counts = np.bincount(cache.labels[pool])
    rarest = int(counts[counts > 0].min())  # stratified folds need every class in each: at most this many
    folds = 0 if refit is None else min(refit.folds, rarest)
    if refit is not None and refit.folds and folds < 2:
        print(f"warning: a class has {rarest} row(s) in train + validation, too few for register.calibration_folds: "
              f"{refit.folds}; the temperature and probability rules are fitted on the validation split instead",
              file=sys.stderr)
    if folds < 2:
        return CalibrationRows(splits.val, predict_proba(head, cache, splits.val), cache.labels[splits.val], False)
    probs = out_of_fold_probabilities(cache, pool, refit.config, refit.epochs, folds, refit.seed)
    return CalibrationRows(pool, probs, cache.labels[pool], True)


def out_of_fold_probabilities(cache: FeatureCache, pool: np.ndarray, config: TrainConfig, epochs: int,
                              folds: int, seed: int) -> np.ndarray:
    """(len(pool), C) probabilities of ``pool``'s rows, each from the head trained with ``config`` for
    ``epochs`` epochs on the other ``folds - 1`` folds; the folds are stratified and seeded by ``seed``."""
    probs = np.zeros((len(pool), len(cache.label_names)), dtype=np.float32)
    # Counted in epochs, not trainings: one training of a large head can outlast a progress interval.
    with progress_bars() as bars:
        task = bars.add_task(f"out-of-fold calibration, {folds} trainings x {epochs} epochs", total=folds * epochs)
        for fit_idx, left_idx in pool_folds(cache, pool, folds, seed):
            result = train_head(cache, pool[fit_idx], pool[left_idx], config, stop_at=epochs,
                                on_epoch=lambda _epoch, _scalars: bars.advance(task, 1))
            probs[left_idx] = predict_proba(result.head, cache, pool[left_idx])
    return probs


def pool_folds(cache: FeatureCache, pool: np.ndarray, folds: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(fit, left-out) positions into ``pool`` for each of ``folds`` stratified, ``seed``-shuffled folds:
    the folds of out-of-fold calibration and of ``tune.folds`` cross-validation."""
    return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(pool, cache.labels[pool])
