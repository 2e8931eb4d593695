"""Out-of-fold probabilities: rows that took no part in choosing the model, for calibration.

The registered head's validation rows chose its kept epoch and, among the trials, the head itself,
so its probabilities there are optimistic, and there are few of them (15 % of the labelled rows):
a temperature fitted on them follows their noise. Here the chosen configuration is trained again on
``folds`` stratified folds of train + validation, each for exactly the kept number of epochs (no
early stopping, no selection on the left-out fold), and every row of the pool is predicted by the one
model that never saw it. A calibrator fitted on those predictions sees, for every labelled row
outside the holdout, the probabilities of a model like the registered one on a row it did not train
on or choose by, as long as the configuration trains alike from any start; where it does not, the
head's own validation rows are used instead (``fold_models_unlike_the_head``).
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
from msc.model.calibrated import CalibrationMap
from msc.train.calibration_maps import DEFAULT_MAP, cross_validated_nll, fit_map, row_nll
from msc.train.config import TrainConfig
from msc.train.loop import predict_proba, train_head

NOISE_MARGIN = 1.0  # standard errors by which the head's own rows must calibrate it better (fold_models_unlike_the_head)


@dataclass(frozen=True)
class Refit:
    """The candidate's configuration, trained again on folds for its out-of-fold calibration rows."""

    config: TrainConfig  # the train section the candidate was trained with
    epochs: int  # its kept epoch: each fold trains exactly this long
    folds: int  # register.calibration_folds; 0 fits the temperature on the validation split
    seed: int  # data.split_seed, which draws the folds


@dataclass(frozen=True)
class CalibrationRows:
    """Rows with the probabilities of a model that did not train on them, and their labels."""

    rows: np.ndarray  # (n,) cache row ids: train + validation out of fold, or the validation split
    probs: np.ndarray  # (n, C) raw softmax of the model that did not train on each row (see out_of_fold)
    labels: np.ndarray  # (n,) their class ids
    out_of_fold: bool  # False: the candidate's own probabilities on the validation split, which chose it


@dataclass(frozen=True)
class CalibrationChoice:
    """What registration fits on: ``fitted`` holds the rows of the temperature, the probability rules and the
    label sets; ``ranked`` those of the label issues (out of fold where there are such rows: every labelled
    post outside the holdout, whichever rows the rules were fitted on)."""

    fitted: CalibrationRows
    ranked: CalibrationRows
    sentence: str | None  # which rows the rules were fitted on and why, when out-of-fold rows were set aside
    folds_map: CalibrationMap | None = None  # the map fitted on the out-of-fold rows, None without them


def calibration_rows(head, cache: FeatureCache, splits: Splits, refit: Refit | None, kind: str = DEFAULT_MAP
                     ) -> CalibrationChoice:
    """The out-of-fold predictions of train + validation that ``refit`` makes (with fewer folds than asked
    when the rarest class has fewer rows), unless ``head``'s own validation rows suit it better
    (``fold_models_unlike_the_head``); with no ``refit``, 0 folds or a class of one row, ``head``'s
    predictions of the validation split, whose rows also chose the kept epoch and, with the other rows'
    help, the trial, so that its probabilities there are optimistic (README, issue 25)."""
    own = CalibrationRows(splits.val, predict_proba(head, cache, splits.val), cache.labels[splits.val], False)
    pool = np.concatenate([splits.train, splits.val])
    counts = np.bincount(cache.labels[pool])
    rarest = int(counts[counts > 0].min())  # stratified folds need every class in each: at most this many
    folds = 0 if refit is None else min(refit.folds, rarest)
    if refit is not None and refit.folds and folds < 2:
        print(f"warning: a class has {rarest} row(s) in train + validation, too few for register.calibration_folds: "
              f"{refit.folds}; the temperature and probability rules are fitted on the validation split instead",
              file=sys.stderr)
    if folds < 2:
        return CalibrationChoice(own, own, None)
    probs = out_of_fold_probabilities(cache, pool, refit.config, refit.epochs, folds, refit.seed)
    out_of_fold = CalibrationRows(pool, probs, cache.labels[pool], True)
    folds_map = fit_map(kind, out_of_fold.probs, out_of_fold.labels)
    sentence = fold_models_unlike_the_head(own, out_of_fold, folds_map, refit.seed)
    return CalibrationChoice(own if sentence else out_of_fold, out_of_fold, sentence, folds_map)


def fold_models_unlike_the_head(own: CalibrationRows, out_of_fold: CalibrationRows, folds_map: CalibrationMap,
                                seed: int) -> str | None:
    """A sentence when the head's own validation rows calibrate it clearly better than the out-of-fold rows
    do, else None.

    Out-of-fold rows come from the configuration trained again from other starts on other rows; they stand
    for the head when the configuration trains alike each time. One that does not (a high learning rate kept
    at its first epoch reached validation accuracy 0.50 to 0.75 over four seeds, docs/calibration.md)
    makes fold models unlike the head the study chose, and a map fitted on them mis-corrects it. Both maps
    are scored where the head's own probabilities are known and it did not train, its validation rows, by
    each row's NLL: the out-of-fold map as fitted (it never saw the head), the validation map cross-validated
    over those rows. The validation rows win only by more than NOISE_MARGIN standard errors of the mean
    paired difference: they are fewer, and they also chose the head, so on a tie the out-of-fold rows stay.
    ``folds_map`` is the map fitted on the out-of-fold rows; the validation map is of the same kind.
    One standard error suffices because the cross-validated map already pays for its few rows: with fold
    models alike the head, 150 validation rows won by more than one in at most 1 of 20 draws
    (tests/unit/train/test_calibration_rows.py)."""
    from_folds = row_nll(folds_map, own.probs, own.labels)
    from_own = cross_validated_nll(folds_map.kind, own.probs, own.labels, seed)
    if from_own is None:
        return None
    gain = from_folds - from_own  # (n,) per validation row: > 0 where the head's own rows calibrate it better
    standard_error = float(gain.std(ddof=1) / np.sqrt(len(gain)))
    if gain.mean() <= NOISE_MARGIN * standard_error:
        return None
    return (f"the probability rules are fitted on the candidate's {len(own.rows)} validation rows, not on "
            f"{len(out_of_fold.rows)} out-of-fold rows: on its validation rows a {folds_map.kind} map fitted there scores a "
            f"mean NLL of {from_own.mean():.3f} (cross-validated) against {from_folds.mean():.3f} for one fitted on "
            f"the fold models (standard error of the difference {standard_error:.3f}), which train unlike the chosen head")


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
