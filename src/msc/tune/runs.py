"""The study's MLflow parent run: created once per study, its summary, and closing the runs of dead trials."""

from __future__ import annotations

import contextlib
from typing import Any

import optuna

from msc.core.errors import UserError
from msc.features.cache import FeatureCache
from msc.track.locks import shared_lock
from msc.track.store import git_commit
from msc.tune.study import FINISHED, identity_hash

PARENT_RUN_ATTR = "mlflow_parent_run_id"


def parent_run_lock(storage_url: str, study_name: str) -> contextlib.AbstractContextManager[None]:
    """The lock of the study's MLflow runs among all its tuners: held to create the parent run, to write to
    it (src/tune.py's note on it too), and to close a dead trial's run. MLflow inserts a tag or a latest
    metric that a run does not have yet, and of two tuners inserting the same one at once, one failed (a
    tuner finishing beside another exited 1 on `UNIQUE constraint failed: tags.key, tags.run_uuid`)."""
    return shared_lock(storage_url, f"parent run of study {study_name}",
                       waiting=f"waiting for another tuner of study '{study_name}', which is writing to the study's "
                               "MLflow parent run (registering the best model holds it for minutes); this tuner goes "
                               "on when it is done")


def parent_run_id(study: optuna.Study, storage_url: str, experiment_id: str, identity: dict[str, Any]) -> str:
    """The study's MLflow parent run, created once and kept in the study's user attributes, so
    every thread and every process nests its trials under the same run. Tagged with the study's
    identity; ``study_identity.json`` holds the identity itself."""
    from mlflow import MlflowClient

    client = MlflowClient()
    # Tuners that start together would each create a parent; under the lock, the first does and
    # the others read its id.
    with parent_run_lock(storage_url, study.study_name):
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)  # read from the storage, not a cached copy
        if run_id is None:
            tags = {"study_name": study.study_name, "study_identity": identity_hash(identity),
                    "feature_fingerprint": identity["feature_fingerprint"],
                    "split_identity": identity["split_identity"], "git_commit": git_commit()}
            run_id = client.create_run(experiment_id, run_name=f"study-{study.study_name}", tags=tags).info.run_id
            client.log_dict(run_id, identity, "study_identity.json")
            study.set_user_attr(PARENT_RUN_ATTR, run_id)
    check_parent_exists(client, study, storage_url, run_id)
    return run_id


def check_parent_exists(client, study: optuna.Study, storage_url: str, run_id: str) -> None:
    """A sentence when the study names a parent run this tracking store does not have: the Optuna
    storage and the MLflow store were separated (mlflow.db emptied or replaced, another tracking URI)."""
    import mlflow

    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise  # the tracking server is down or refuses: not a separated store
        raise UserError(
            f"study {study.study_name} in {storage_url} has its MLflow parent run {run_id}, and the tracking store "
            f"{mlflow.get_tracking_uri()} has no such run: the two stores were separated (mlflow.db emptied or "
            "replaced, or MLFLOW_TRACKING_URI points elsewhere). Either point MLFLOW_TRACKING_URI at the store that "
            f"holds the study's runs, or start a new study in this store: python -m src.tune --study-name NEW "
            f"(or delete the old one: optuna delete-study --study-name {study.study_name} --storage {storage_url})"
        ) from None


def log_skipped(parent_id: str, cache: FeatureCache) -> None:
    """How many labelled samples featurize dropped (data.on_error: skip), and which, on the parent run."""
    from mlflow import MlflowClient

    skipped = cache.manifest.skipped
    client = MlflowClient()
    client.log_metric(parent_id, "skipped_samples", len(skipped))
    if skipped:
        client.log_dict(parent_id, skipped, "skipped_samples.json")


def log_study_summary(study: optuna.Study, parent_id: str, metric: str) -> None:
    """Best params and score, and Optuna's history and importance plots, on the parent run."""
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    client = MlflowClient()
    best = study.best_trial
    client.log_metric(parent_id, f"best_{metric}", best.value)
    for key, value in best.params.items():
        client.set_tag(parent_id, f"best.{key}", str(value))
    client.set_tag(parent_id, "best_trial_number", str(best.number))
    client.log_dict(parent_id, {"number": best.number, "value": best.value, "params": best.params}, "best_trial.json")
    plots = {"optimization_history.png": optuna.visualization.matplotlib.plot_optimization_history}
    if sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) >= 2:
        plots["param_importances.png"] = optuna.visualization.matplotlib.plot_param_importances
    for name, plot in plots.items():
        try:
            axes = plot(study)
        except (ValueError, RuntimeError) as error:  # e.g. importances when no parameter varied
            print(f"skipped {name}: {error}")
            continue
        client.log_figure(parent_id, axes.figure, name)
        plt.close(axes.figure)


def retry_of(study: optuna.Study, number: int) -> int | None:
    """The trial that Optuna created to retry trial ``number`` after its process died, if any."""
    retry_history = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history
    retries = [t.number for t in study.get_trials(deepcopy=False) if retry_history(t)[-1:] == [number]]
    return min(retries, default=None)


def close_dead_runs(study: optuna.Study, parent_id: str) -> list[str]:
    """End every trial run of the study that MLflow still shows RUNNING but whose Optuna trial is not
    running any more (its process was killed: kill -9, a lost machine). Returns one line per run closed.

    - The trial failed (Optuna failed it through its heartbeat): FAILED, with a note naming the retry.
    - The trial completed or was pruned: FINISHED (a killed registration had reopened its run).
    - No such trial: KILLED.
    Trials running elsewhere keep their runs as they are.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    optuna.storages.fail_stale_trials(study)  # a dead trial's heartbeat stopped: FAIL, and a retry
    parent = client.get_run(parent_id)
    # The runs first, then the trials: a run starts after its trial exists, so every run found has its
    # trial in the list read next (the other order would take a run just started elsewhere for an orphan).
    runs = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}' and "
                              "attributes.status = 'RUNNING'")
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    closed = []
    for run in runs:
        number = int(run.data.tags.get("trial_number", -1))
        trial = trials.get(number)
        state = trial.state if trial else None
        if state == optuna.trial.TrialState.RUNNING:
            continue
        if state == optuna.trial.TrialState.FAIL:
            retry = retry_of(study, number)
            note = (f"Trial {number}'s process died; Optuna failed the trial"
                    + (f" and retried it as trial {retry}." if retry is not None else "."))
            client.set_tag(run.info.run_id, "mlflow.note.content", note)
            status = "FAILED"
        else:
            status = "FINISHED" if state in FINISHED else "KILLED"
        client.set_terminated(run.info.run_id, status=status)
        closed.append(f"run {run.info.run_name} ({run.info.run_id}): {status}")
    return closed
