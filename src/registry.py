"""The MLflow model registry: score candidates on the holdout, promote the better one as ``msc``.

The holdout is scored from the feature cache with the head of the logged model, so the number
describes exactly the artifact that gets registered. The best trial's model is registered as
trained (on the training split, early-stopped on validation), not retrained on train+validation:
a retrained model would be a different artifact from the one tracked and selected, with no
validation split left to stop it.
"""

from __future__ import annotations

import numpy as np

from src.errors import UserError
from src.features import FeatureCache
from src.metrics import classification_metrics, scalar_metrics
from src.train import predict_proba

MODEL_NAME = "msc"
ALIAS = "production"
STAGE = "Production"


def load_msc_model(model_uri: str):
    """The MscModel behind ``model_uri`` (backbone and head loaded)."""
    import mlflow

    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()


def holdout_predictions(model_uri: str, cache: FeatureCache, rows: np.ndarray) -> np.ndarray:
    """(n, 3) probabilities of the logged model's head on cached holdout features."""
    model = load_msc_model(model_uri)
    return predict_proba(model.head, cache, rows)


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
    # Stages are deprecated in MLflow 3 but still what `models:/msc/Production` resolves.
    client.transition_model_version_stage(MODEL_NAME, version.version, STAGE, archive_existing_versions=True)
    client.set_registered_model_alias(MODEL_NAME, ALIAS, version.version)
    return version


def register_if_better(model_uri: str, cache: FeatureCache, holdout_rows: np.ndarray, force: bool,
                       tags: dict[str, str]) -> tuple[dict, np.ndarray]:
    """Score the candidate and the current Production model on the same holdout rows; promote
    the candidate when it has the higher weighted F1 (or ``force``).

    Returns the summary for results/metrics.json and the (n, 3) holdout probabilities, both of
    whichever model is registered afterwards.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    labels = cache.labels[holdout_rows]
    candidate_probs = holdout_predictions(model_uri, cache, holdout_rows)
    candidate = classification_metrics(labels, candidate_probs.argmax(1))
    current = production_version(client)
    current_scores = current_probs = None
    if current is not None:
        try:
            current_probs = holdout_predictions(f"models:/{MODEL_NAME}/{current.version}", cache, holdout_rows)
            current_scores = classification_metrics(labels, current_probs.argmax(1))
        except (RuntimeError, KeyError, UserError):
            current_scores = None  # built for another backbone or cache: not comparable, replace it
    promote_now = force or current_scores is None or candidate["weighted_f1"] > current_scores["weighted_f1"]
    if promote_now:
        registered, scores, probs = promote(client, model_uri, candidate, tags), candidate, candidate_probs
    else:
        registered, scores, probs = current, current_scores, current_probs
    summary = {
        "model": MODEL_NAME,
        "version": int(registered.version),
        "promoted_now": promote_now,
        "holdout_samples": int(len(holdout_rows)),
        "holdout": scalar_metrics(scores),
        "candidate_holdout_weighted_f1": candidate["weighted_f1"],
    }
    return summary, probs
