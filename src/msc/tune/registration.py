"""Scoring the study's best model on the holdout and letting the registry gate decide.

The holdout is scored from the feature cache with the head of the logged model, so the number
describes exactly the artifact that gets registered. The best trial's model is registered as
trained (on the training split, early-stopped on validation), not retrained on train+validation:
a retrained model would be a different artifact from the one tracked and selected, with no
validation split left to stop it. Its temperature is fitted on out-of-fold predictions of its
configuration (msc/train/crossfit.py), not on the validation rows that chose it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from msc.config import TrainConfig
from msc.core.errors import UserError
from msc.features.cache import FeatureCache
from msc.features.splits import Splits
from msc.track.logged_model import registered_copy
from msc.track.registry import (
    MODEL_NAME,
    Candidate,
    Decision,
    compare,
    disagreement,
    finish_promotion,
    gate,
    load_msc_model,
    move_stage,
    production_version,
    promote,
    unfinished_versions,
)
from msc.train.calibration import calibration_errors, fit_temperature, with_temperature
from msc.train.crossfit import out_of_fold_probabilities
from msc.train.loop import predict_proba
from msc.train.metrics import bootstrap_intervals, classification_metrics, reported_metrics


@dataclass(frozen=True)
class Refit:
    """The candidate's configuration, trained again on folds for its out-of-fold calibration rows."""

    config: TrainConfig  # the train section the candidate was trained with
    epochs: int  # its kept epoch: each fold trains exactly this long
    folds: int  # register.calibration_folds; 0 fits the temperature on the validation split
    seed: int  # data.split_seed, which draws the folds


def fitted_temperature(head, cache: FeatureCache, splits: Splits, refit: Refit | None) -> float:
    """The candidate's temperature, fitted on the out-of-fold predictions of train + validation that
    ``refit`` makes (with fewer folds than asked when the rarest class has fewer rows); with no
    ``refit``, 0 folds or a class of one row, on the validation split, whose rows also chose the kept
    epoch and, with the other rows' help, the trial, so that its probabilities there are optimistic
    (README, issue 25)."""
    pool = np.concatenate([splits.train, splits.val])
    counts = np.bincount(cache.labels[pool])
    rarest = int(counts[counts > 0].min())  # stratified folds need every class in each: at most this many
    folds = 0 if refit is None else min(refit.folds, rarest)
    if refit is not None and refit.folds and folds < 2:
        print(f"warning: a class has {rarest} row(s) in train + validation, too few for register.calibration_folds: "
              f"{refit.folds}; the temperature is fitted on the validation split instead", file=sys.stderr)
    if folds < 2:
        return fit_temperature(predict_proba(head, cache, splits.val), cache.labels[splits.val])
    probs = out_of_fold_probabilities(cache, pool, refit.config, refit.epochs, folds, refit.seed)
    return fit_temperature(probs, cache.labels[pool])


def model_probabilities(model_uri: str, cache: FeatureCache, rows: np.ndarray) -> tuple[np.ndarray, float]:
    """(n, C) probabilities of the logged model on cached features of ``rows``, with its own
    temperature, and that temperature (1 for a trial's model, which is not calibrated)."""
    model = load_msc_model(model_uri)
    return with_temperature(predict_proba(model.head, cache, rows), model.temperature), model.temperature


def holdout_summary(labels: np.ndarray, probs: np.ndarray, temperature: float, names: tuple[str, ...]) -> dict:
    """Scores of calibrated ``probs`` (n, C) of the classes ``names``: point estimates, 95 % bootstrap
    intervals, and the expected calibration error with the temperature (and its interval) and without it."""
    predictions = probs.argmax(1)
    return {**reported_metrics(classification_metrics(labels, predictions, names)),
            **bootstrap_intervals(labels, predictions),
            **calibration_errors(with_temperature(probs, 1 / temperature), labels, temperature)}


def production_scores(current, cache: FeatureCache, rows: np.ndarray) -> tuple[dict, np.ndarray, float]:
    """The Production version's holdout scores, (n, C) calibrated probabilities and temperature; a
    sentence when it cannot load."""
    uri = f"models:/{MODEL_NAME}/{current.version}"
    try:
        probs, temperature = model_probabilities(uri, cache, rows)
    except Exception as error:  # noqa: BLE001 - whatever broke, the gate must not silently replace it
        reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise UserError(
            f"cannot load the Production model {MODEL_NAME} version {current.version} ({uri}) to compare the new "
            f"candidate with it: {reason}. Repair or archive that version, or run tune again with --force to "
            "register the candidate without a comparison"
        ) from None
    return classification_metrics(cache.labels[rows], probs.argmax(1), cache.label_names), probs, temperature


def follow_alias(client):
    """The version behind alias ``production``, the source of truth, with stage Production moved to it
    when the two disagree (a rollback in MLflow 3 moves the alias alone), saying so in one sentence."""
    current = production_version(client)
    if (sentence := disagreement(client)) is not None:
        print(f"warning: {sentence}; tune moves the stage to the alias's version", file=sys.stderr)
        if current is not None:
            move_stage(client, current.version)
    return current


def resume_decision(left) -> Decision | None:
    """Registration is idempotent per run: a version that a killed tune registered for this candidate
    and did not finish (``left``: no stage, no alias) is finished now (tags, stage, alias), never
    registered a second time. A version of the run that did finish (archived since, or rolled back
    from) is history: the gate decides about the candidate as usual."""
    if left is None:
        return None
    return Decision(True, f"version {left.version} was registered for this trial by a tune that was interrupted; "
                          "it is finished now, not registered again")


def name_unfinished(client) -> None:
    for version in unfinished_versions(client):
        print(f"warning: {MODEL_NAME} version {version.version} has no stage and no alias (a registration was "
              f"interrupted before it finished); archive it, or delete it: MlflowClient().delete_model_version"
              f"('{MODEL_NAME}', '{version.version}')", file=sys.stderr)


def register_if_better(candidate: Candidate, cache: FeatureCache, splits: Splits, force: bool,
                       bundle_backbone: str | None = None, refit: Refit | None = None) -> tuple[dict, np.ndarray]:
    """Score the candidate on the holdout and let the gate decide; promote it when the gate says
    so, or when it has the higher weighted F1 than a comparable Production version.

    ``bundle_backbone`` (a local backbone folder): register a copy of the candidate with that folder
    inside. ``refit``: how to calibrate it (``fitted_temperature``). Returns the summary for
    results/metrics.json and the (n, C) holdout probabilities, both of whichever model is in
    Production afterwards.
    """
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    rows = splits.holdout
    labels = cache.labels[rows]
    candidate_head = load_msc_model(candidate.model_uri).head
    raw = predict_proba(candidate_head, cache, rows)  # (n, C), uncalibrated: a temperature never moves the argmax
    candidate_scores = classification_metrics(labels, raw.argmax(1), cache.label_names)
    current = follow_alias(client)
    left = max((v for v in unfinished_versions(client) if v.run_id == candidate.run_id), key=lambda v: int(v.version),
               default=None)
    decision = resume_decision(left) or gate(current, candidate, cache.fingerprint, splits.identity, force)
    production = None  # (probabilities, temperature) of the Production version on the holdout, once loaded
    if decision is None:
        current_scores, *production = production_scores(current, cache, rows)
        decision = compare(current, candidate_scores["weighted_f1"], current_scores["weighted_f1"], len(rows))
    if not decision.promote:  # what metrics.json reports is what is served: Production, with its own temperature
        probs, temperature = production or production_scores(current, cache, rows)[1:]
        registered = current
    else:
        # Calibrated only when promoted (five trainings, README); a version that a killed tune registered
        # for this candidate keeps the temperature it was logged with.
        temperature = (load_msc_model(f"models:/{MODEL_NAME}/{left.version}").temperature if left is not None
                       else fitted_temperature(candidate_head, cache, splits, refit))
        probs = with_temperature(raw, temperature)
        tags = {**candidate.tags, "mlflow_run_id": candidate.run_id, "feature_fingerprint": cache.fingerprint,
                "split_identity": splits.identity, "temperature": f"{temperature:.6f}",
                "labels": ",".join(cache.label_names),  # the class order of its p_<label> outputs
                "backbone_identity": cache.manifest.backbone_identity}
        if left is not None:
            registered = finish_promotion(client, left, candidate_scores, tags)
        else:
            with mlflow.start_run(run_id=candidate.run_id):
                model_uri = registered_copy(candidate.model_uri, temperature, bundle_backbone).model_uri
            registered = promote(client, model_uri, candidate_scores, tags)
    name_unfinished(client)
    summary = {
        "model": MODEL_NAME,
        "version": int(registered.version),
        "promoted_now": decision.promote,
        "gate": decision.reason,
        "compared_with_version": decision.compared_with,
        "holdout_samples": int(len(rows)),
        "holdout": holdout_summary(labels, probs, temperature, cache.label_names),
        "candidate_holdout_weighted_f1": candidate_scores["weighted_f1"],
    }
    return summary, probs
