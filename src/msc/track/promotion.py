"""Recording a registration in the registry, and the ``Registration`` record a tune ends with.

msc/tune/registration.py runs the steps: the candidate's holdout scores (msc.train), the gate
(msc/track/registry.py), the out-of-fold temperature and probability rules (msc.train), then
``record_promotion`` here.
This module also reads what earlier tunes left: the alias to follow, and a registration that a
killed tune did not finish.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import mlflow

from msc.track.logged_model import registered_copy
from msc.track.registry import (
    MODEL_NAME,
    Candidate,
    Decision,
    disagreement,
    finish_promotion,
    move_stage,
    production_version,
    promote,
    unfinished_versions,
)


@dataclass(frozen=True)
class Registration:
    """What the registry holds after a tune, and why: the fields of results/metrics.json that describe
    the model (msc/track/summary.py writes them at the top level of that file, as before)."""

    model: str  # the registered model's name, msc
    version: int  # the version in Production after this run
    promoted_now: bool
    gate: str  # the registry gate's sentence
    compared_with_version: int | None  # the Production version scored against the candidate, if one was
    holdout_samples: int
    # The Production version's holdout as served (its rules' labels and calibrated probabilities): scores, ci95
    # intervals, ece, ece_ci95, ece_temperature_only, ece_uncalibrated, log_loss (and its _temperature_only and
    # _uncalibrated), temperature, calibration, label_sets.
    holdout: dict
    candidate_holdout_weighted_f1: float  # the candidate's plain argmax, which the gate compares (its rules come after)


def follow_alias(client):
    """The version behind alias ``production``, the source of truth, with stage Production moved to it
    when the two disagree (a rollback in MLflow 3 moves the alias alone), saying so in one sentence."""
    current = production_version(client)
    if (sentence := disagreement(client)) is not None:
        print(f"warning: {sentence}; tune moves the stage to the alias's version", file=sys.stderr)
        if current is not None:
            move_stage(client, current.version)
    return current


def unfinished_for(client, run_id: str):
    """The newest version that a killed tune registered for the run ``run_id`` and did not finish, or None."""
    return max((v for v in unfinished_versions(client) if v.run_id == run_id), key=lambda v: int(v.version),
               default=None)


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


LABEL_ISSUES = "label_issues.csv"  # the ranking's artifact, in the registered version's run and the study's parent run


def log_label_issues(client, run_id: str, text: str) -> None:
    """Log label_issues.csv's ``text`` to the run ``run_id``."""
    client.log_text(run_id, text, LABEL_ISSUES)


def stored_label_issues(run_id: str) -> str | None:
    """The label_issues.csv logged to the run ``run_id``, or None when it has none (registered before the
    ranking existed)."""
    try:
        return mlflow.artifacts.load_text(f"runs:/{run_id}/{LABEL_ISSUES}")
    except (mlflow.exceptions.MlflowException, OSError):
        return None


def record_promotion(client, candidate: Candidate, scores: dict[str, float], tags: dict[str, str], temperature: float,
                     rules: dict | None = None, left=None, bundle_backbone: str | None = None):
    """Make the candidate the production model: finish ``left`` (its unfinished version), or log its head
    again with ``temperature`` and ``rules`` (ProbabilityRules.to_dict(); and ``bundle_backbone`` inside)
    in its own run and register that. ``scores`` (its scalar holdout scores) and ``tags`` become version
    tags. Returns the ModelVersion."""
    tags = {**candidate.tags, **tags, "mlflow_run_id": candidate.run_id, "temperature": f"{temperature:.6f}"}
    if left is not None:
        return finish_promotion(client, left, scores, tags)
    with mlflow.start_run(run_id=candidate.run_id):
        model_uri = registered_copy(candidate.model_uri, temperature, rules, bundle_backbone).model_uri
    return promote(client, model_uri, scores, tags)
