"""The MLflow model registry: the gate that decides whether a study's best model becomes ``msc``.

Every registered version is tagged with the feature fingerprint and the split identity it was
trained and scored with. A candidate is compared with the current Production version only when
both match: then the two were trained without the same holdout rows and are scored on exactly
those rows. Otherwise a comparison would score one of them on rows it may have trained on (a
changed ``data.split_seed``) or on features it was never trained for (a changed backbone), so the
candidate, the model of the experiment just run, is registered, and the summary says why.

This module decides on scores it is given (msc/tune/registration.py scores both models on the
holdout) and records the decision in the registry.

A rollback is alias ``production`` moved by hand to a version older than the one msc promoted last
(README, "Using the model"). msc tags each version it promotes with ``promoted_at`` once the alias
names it, so the version rolled back from is the last one so tagged while the alias names an older
one; the gate keeps that version's run out unless ``--force``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from msc.model.integrity import DIGEST_TAG
from msc.track.integrity import checked_copy, model_digest

MODEL_NAME = "msc"
ALIAS = "production"
STAGE = "Production"
PROMOTED_AT = "promoted_at"  # version tag, epoch milliseconds: msc's own promotion moved the alias here


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
    """The MscModel behind ``model_uri`` (backbone and head loaded), a version logged before the msc
    package included, once its files are checked (msc/track/integrity.py)."""
    import mlflow

    from msc.track.inference import legacy_code

    folder = str(checked_copy(model_uri))
    with legacy_code(folder):
        return mlflow.pyfunc.load_model(folder).unwrap_python_model()


def production_version(client):
    """The version behind alias ``production``, or None when nothing is registered yet."""
    import mlflow

    try:
        return client.get_model_version_by_alias(MODEL_NAME, ALIAS)
    except mlflow.exceptions.MlflowException:
        return None


def version_tags(scores: dict[str, float], tags: dict[str, str]) -> dict[str, str]:
    return {**tags, **{f"holdout_{k}": f"{v:.6f}" for k, v in scores.items()}}


def promote(client, model_uri: str, scores: dict[str, float], tags: dict[str, str]):
    """Register ``model_uri`` as a new version of ``msc``: stage Production (older versions
    archived) and alias ``production``; ``scores``, its scalar holdout scores, become ``holdout_*``
    tags. Returns the ModelVersion."""
    import mlflow

    version = mlflow.register_model(model_uri, MODEL_NAME, tags=version_tags(scores, tags))
    return finish_promotion(client, version, scores, tags)


def finish_promotion(client, version, scores: dict[str, float], tags: dict[str, str]):
    """Give a registered ``version`` its tags, stage Production and alias ``production``, then the
    ``promoted_at`` tag that marks it as promoted by msc: each step is idempotent, so a registration
    killed halfway is finished by running this again. The tag ``model_digest`` is the sha256 of the
    version's digests.json: loading compares the model's files with it."""
    tags = {**tags, DIGEST_TAG: model_digest(f"models:/{MODEL_NAME}/{version.version}")}
    for key, value in version_tags(scores, tags).items():
        client.set_model_version_tag(MODEL_NAME, version.version, key, value)
    move_stage(client, version.version)
    client.set_registered_model_alias(MODEL_NAME, ALIAS, version.version)
    client.set_model_version_tag(MODEL_NAME, version.version, PROMOTED_AT, str(time.time_ns() // 1_000_000))
    return version


def rolled_back_from(client, current):
    """The version msc promoted last, when alias ``production`` names an older ``current`` version
    (moved there by hand: every promotion by msc moves the alias to the version it promotes); else None."""
    promoted = [v for v in client.search_model_versions(f"name = '{MODEL_NAME}'") if PROMOTED_AT in (v.tags or {})]
    last = max(promoted, key=lambda v: (int(v.tags[PROMOTED_AT]), int(v.version)), default=None)
    if current is None or last is None or int(last.version) <= int(current.version):
        return None
    return last


def unfinished_versions(client) -> list:
    """Versions with no stage and no alias: left by a registration that was killed halfway. (Searched
    versions carry no aliases in every store; ``production`` is this registry's one alias.)"""
    aliased = production_version(client)
    return [version for version in client.search_model_versions(f"name = '{MODEL_NAME}'")
            if version.current_stage in (None, "None") and (aliased is None or version.version != aliased.version)]


def move_stage(client, version: str) -> None:
    """Put ``version`` alone in stage Production, so that ``models:/msc/Production`` follows the alias.

    Stages are deprecated in MLflow 3 but still what that URI resolves. The older Production
    versions are archived one by one: ``archive_existing_versions=True`` fails on an MLflow server
    with a PostgreSQL store (3.17 compares the integer version column with a string).
    """
    client.transition_model_version_stage(MODEL_NAME, version, STAGE)
    for older in client.search_model_versions(f"name = '{MODEL_NAME}'"):
        if older.current_stage == STAGE and older.version != version:
            client.transition_model_version_stage(MODEL_NAME, older.version, "Archived")


def disagreement(client) -> str | None:
    """A sentence when alias ``production``, the source of truth, and stage Production name different
    versions (a rollback in MLflow 3 moves the alias alone), else None."""
    alias = production_version(client)
    staged = sorted(str(v.version) for v in client.search_model_versions(f"name = '{MODEL_NAME}'")
                    if v.current_stage == STAGE)
    if staged == ([str(alias.version)] if alias else []):
        return None
    named = f"version {alias.version}" if alias else "no version"
    return (f"models:/{MODEL_NAME}@{ALIAS} is {named} but models:/{MODEL_NAME}/{STAGE} is "
            f"{'version ' + ', '.join(staged) if staged else 'no version'}; the alias is the production model "
            "(README, 'Using the model')")


def gate(current, candidate: Candidate, feature_fingerprint: str, split_identity: str, force: bool,
         rolled_back=None) -> Decision | None:
    """Whether the candidate replaces ``current`` (the Production ModelVersion or None) without a
    comparison; None when the two are comparable and the holdout decides (``compare``). A candidate
    that is the run of ``rolled_back`` (``rolled_back_from``) stays out unless ``force``."""
    if current is None:
        return Decision(True, f"no {MODEL_NAME} version is in Production yet")
    if current.tags.get("mlflow_run_id") == candidate.run_id:
        return Decision(False, f"the candidate already is {MODEL_NAME} version {current.version} (Production); "
                               "nothing changed")
    if rolled_back is not None and rolled_back.tags.get("mlflow_run_id") == candidate.run_id and not force:
        return Decision(False, f"the candidate is the run of {MODEL_NAME} version {rolled_back.version}, which was rolled "
                               f"back from: alias {ALIAS} was moved by hand from it to the older version "
                               f"{current.version}, so it stays out; `python -m src.tune --force` registers it again")
    if force:
        return Decision(True, "--force registers the candidate without a comparison")
    differs = [what for what, key, value in (("feature cache", "feature_fingerprint", feature_fingerprint),
                                              ("split", "split_identity", split_identity))
               if current.tags.get(key) != value]
    if differs:
        return Decision(True, f"Production version {current.version} was made with another "
                              f"{' and '.join(differs)}, so the two are not compared on one holdout; the "
                              "candidate of this experiment is registered")
    return None


def compare(current, candidate_f1: float, current_f1: float, rows: int) -> Decision:
    """The comparable case: the higher holdout weighted F1 on the same ``rows`` holdout rows wins."""
    better = candidate_f1 > current_f1
    return Decision(better, (
        f"holdout weighted F1 {candidate_f1:.4f} against Production version {current.version}'s {current_f1:.4f} "
        f"on the same {rows} rows: " + ("the candidate is registered" if better else "Production is kept")),
        int(current.version))
