"""The MLflow model registry: the gate that decides whether a study's best model becomes ``msc``.

Every registered version is tagged with the feature fingerprint and the split identity it was
trained and scored with. A candidate is compared with the current Production version only when
both match: then the two were trained without the same holdout rows and are scored on exactly
those rows. Otherwise a comparison would score one of them on rows it may have trained on (a
changed ``data.split_seed``) or on features it was never trained for (a changed backbone), so the
candidate, the model of the experiment just run, is registered, and the summary says why.

The holdout is scored from the feature cache with the head of the logged model, so the number
describes exactly the artifact that gets registered. The best trial's model is registered as
trained (on the training split, early-stopped on validation), not retrained on train+validation:
a retrained model would be a different artifact from the one tracked and selected, with no
validation split left to stop it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.calibration import calibration_errors, fit_temperature, with_temperature
from src.errors import UserError
from src.features import FeatureCache
from src.metrics import bootstrap_intervals, classification_metrics, scalar_metrics
from src.split import Splits
from src.train import predict_proba

MODEL_NAME = "msc"
ALIAS = "production"
STAGE = "Production"


@dataclass(frozen=True)
class Candidate:
    """The study's best model and what it was trained with."""

    model_uri: str
    run_id: str  # the trial's MLflow run
    tags: dict[str, str]  # study name and identity, trial number, fusion


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str  # one sentence for the log and results/metrics.json
    compared_with: int | None = None  # the Production version scored against the candidate


def load_msc_model(model_uri: str):
    """The MscModel behind ``model_uri`` (backbone and head loaded)."""
    import mlflow

    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()


def model_probabilities(model_uri: str, cache: FeatureCache, rows: np.ndarray) -> tuple[np.ndarray, float]:
    """(n, 3) probabilities of the logged model on cached features of ``rows``, with its own
    temperature, and that temperature (1 for a trial's model, which is not calibrated)."""
    model = load_msc_model(model_uri)
    return with_temperature(predict_proba(model.head, cache, rows), model.temperature), model.temperature


def holdout_summary(labels: np.ndarray, probs: np.ndarray, temperature: float) -> dict:
    """Scores of calibrated ``probs`` (n, 3): point estimates, 95 % bootstrap intervals, and the
    expected calibration error with and without the temperature."""
    predictions = probs.argmax(1)
    return {**scalar_metrics(classification_metrics(labels, predictions)), **bootstrap_intervals(labels, predictions),
            **calibration_errors(with_temperature(probs, 1 / temperature), labels, temperature)}


def production_version(client):
    """The version behind alias ``production``, or None when nothing is registered yet."""
    import mlflow

    try:
        return client.get_model_version_by_alias(MODEL_NAME, ALIAS)
    except mlflow.exceptions.MlflowException:
        return None


def promote(client, model_uri: str, scores: dict, tags: dict[str, str]):
    """Register ``model_uri`` as a new version of ``msc``: stage Production (older versions
    archived) and alias ``production``. Returns the ModelVersion."""
    import mlflow

    version = mlflow.register_model(model_uri, MODEL_NAME, tags={**tags, **{
        f"holdout_{k}": f"{v:.6f}" for k, v in scalar_metrics(scores).items()}})
    # Stages are deprecated in MLflow 3 but still what `models:/msc/Production` resolves. The older
    # Production versions are archived one by one: `archive_existing_versions=True` fails on an
    # MLflow server with a PostgreSQL store (3.17 compares the integer version column with a string).
    client.transition_model_version_stage(MODEL_NAME, version.version, STAGE)
    for older in client.search_model_versions(f"name = '{MODEL_NAME}'"):
        if older.current_stage == STAGE and older.version != version.version:
            client.transition_model_version_stage(MODEL_NAME, older.version, "Archived")
    client.set_registered_model_alias(MODEL_NAME, ALIAS, version.version)
    return version


def production_scores(current, cache: FeatureCache, rows: np.ndarray) -> tuple[dict, np.ndarray, float]:
    """The Production version's holdout scores, (n, 3) calibrated probabilities and temperature; a
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
    return classification_metrics(cache.labels[rows], probs.argmax(1)), probs, temperature


def gate(current, candidate: Candidate, cache: FeatureCache, splits: Splits, force: bool) -> Decision | None:
    """Whether the candidate replaces ``current`` (the Production ModelVersion or None) without a
    comparison; None when the two are comparable and the holdout decides."""
    if current is None:
        return Decision(True, f"no {MODEL_NAME} version is in Production yet")
    if current.tags.get("mlflow_run_id") == candidate.run_id:
        return Decision(False, f"the candidate already is {MODEL_NAME} version {current.version} (Production); "
                               "nothing changed")
    if force:
        return Decision(True, "--force registers the candidate without a comparison")
    differs = [what for what, key, value in (("feature cache", "feature_fingerprint", cache.fingerprint),
                                              ("split", "split_identity", splits.identity))
               if current.tags.get(key) != value]
    if differs:
        return Decision(True, f"Production version {current.version} was made with another "
                              f"{' and '.join(differs)}, so the two are not compared on one holdout; the "
                              "candidate of this experiment is registered")
    return None


def register_if_better(candidate: Candidate, cache: FeatureCache, splits: Splits, force: bool,
                       bundle_backbone: str | None = None) -> tuple[dict, np.ndarray]:
    """Score the candidate on the holdout and let ``gate`` decide; promote it when the gate says
    so, or when it has the higher weighted F1 than a comparable Production version.

    ``bundle_backbone`` (a local backbone folder): register a copy of the candidate with that folder
    inside. Returns the summary for results/metrics.json and the (n, 3) holdout probabilities,
    both of whichever model is in Production afterwards.
    """
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    rows = splits.holdout
    labels = cache.labels[rows]
    # The candidate's temperature, fitted on the validation split only; the holdout only reports it.
    # A trial's model has none yet, so its head's probabilities are the raw ones.
    candidate_head = load_msc_model(candidate.model_uri).head
    temperature = fit_temperature(predict_proba(candidate_head, cache, splits.val), cache.labels[splits.val])
    candidate_probs = with_temperature(predict_proba(candidate_head, cache, rows), temperature)
    candidate_scores = classification_metrics(labels, candidate_probs.argmax(1))
    current = production_version(client)
    decision = gate(current, candidate, cache, splits, force)
    probs, probs_temperature = candidate_probs, temperature
    if decision is None:
        current_scores, current_probs, current_temperature = production_scores(current, cache, rows)
        better = candidate_scores["weighted_f1"] > current_scores["weighted_f1"]
        decision = Decision(better, (
            f"holdout weighted F1 {candidate_scores['weighted_f1']:.4f} against Production version "
            f"{current.version}'s {current_scores['weighted_f1']:.4f} on the same {len(rows)} rows: "
            + ("the candidate is registered" if better else "Production is kept")), int(current.version))
        if not better:
            probs, probs_temperature = current_probs, current_temperature
    registered = current
    if decision.promote:
        from src.serving import registered_copy

        with mlflow.start_run(run_id=candidate.run_id):
            model_uri = registered_copy(candidate.model_uri, temperature, bundle_backbone).model_uri
        tags = {**candidate.tags, "mlflow_run_id": candidate.run_id, "feature_fingerprint": cache.fingerprint,
                "split_identity": splits.identity, "temperature": f"{temperature:.6f}"}
        registered = promote(client, model_uri, candidate_scores, tags)
    summary = {
        "model": MODEL_NAME,
        "version": int(registered.version),
        "promoted_now": decision.promote,
        "gate": decision.reason,
        "compared_with_version": decision.compared_with,
        "holdout_samples": int(len(rows)),
        "holdout": holdout_summary(labels, probs, probs_temperature),
        "candidate_holdout_weighted_f1": candidate_scores["weighted_f1"],
    }
    return summary, probs
