"""The tune stage's work: the study to ``tune.trials`` finished trials, then the registry gate.

It reads what the earlier stages wrote, the feature cache and the split, and stops with a sentence
when either is missing or stale; it never rebuilds them.
"""

from __future__ import annotations

import contextlib

from rich.console import Console

from msc.config import Config
from msc.core.errors import UserError, step
from msc.core.paths import local_folder
from msc.features.cache import open_cache
from msc.features.splits import load_splits
from msc.track.locks import shared_lock
from msc.track.registry import MODEL_NAME, Candidate
from msc.track.store import setup_mlflow
from msc.tune.objective import Objective
from msc.tune.progress import run_study_with_progress
from msc.tune.registration import register_if_better
from msc.tune.runs import epoch_curves, log_skipped, log_study_summary, parent_run_id
from msc.tune.study import finished_trials, identity_hash, one_sqlite_tuner, open_study, study_identity, trials_seconds
from msc.tune.summary import TuneSummary, write_results


def tune(config: Config, force: bool = False, console: Console | None = None) -> TuneSummary:
    """Run the study to ``tune.trials`` finished trials, then put the best through the registry gate."""
    bundle = None
    if config.register.bundle_backbone:  # checked before the study, not after 30 trials
        bundle = local_folder(config.model.backbone)
        if bundle is None:
            raise UserError(f"register.bundle_backbone needs model.backbone to be a local folder, got "
                            f"'{config.model.backbone}'; set register.bundle_backbone: false to reference it")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(one_sqlite_tuner(config.tune.storage))
        except BlockingIOError:
            raise UserError(
                f"another tuner is already running on {config.tune.storage}: a SQLite study takes one tuner at a "
                "time. Wait for it to finish (a later run continues the same study), or run several tuners on "
                "PostgreSQL: python -m src.tune --storage postgresql://user@host:5432/db"
            ) from None
        return run_tuning(config, force, console, None if bundle is None else str(bundle))


def run_tuning(config: Config, force: bool, console: Console | None, bundle_backbone: str | None) -> TuneSummary:
    """The study, its summary and the registration; ``tune`` holds the storage's lock around it."""
    from mlflow import MlflowClient

    with step("opening the feature cache and the split"):
        cache = open_cache(config)
        splits = load_splits(config.data, cache)
    identity = study_identity(config, cache, splits)
    study_name = config.tune.study_name or f"msc-{identity_hash(identity)}"
    with step(f"opening study {study_name} in {config.tune.storage} and the MLflow store"):
        study = open_study(config.tune.storage, study_name, config.tune.seed, identity)
        experiment_id = setup_mlflow()
        parent_id = parent_run_id(study, config.tune.storage, experiment_id, identity)
        log_skipped(parent_id, cache)
    objective = Objective(config, cache, splits, experiment_id, parent_id, config.tune.trials)
    console = console or Console()
    # A complete study runs nothing: its parent run is left as it was, so that MLflow's duration
    # (first start to last end) does not grow by the time between two `tune` commands.
    runs_trials = finished_trials(study) < config.tune.trials
    if runs_trials:
        MlflowClient().update_run(parent_id, status="RUNNING")  # reopened when a study resumes
        try:
            with step(f"running the trials of study {study_name}"):
                run_study_with_progress(study, objective, config.tune, console)
        except KeyboardInterrupt:
            # Optuna has failed the running trial (its MLflow run ends FAILED); the parent ends KILLED.
            MlflowClient().set_terminated(parent_id, status="KILLED")
            raise KeyboardInterrupt(f"study {study_name} stopped: its running trial is marked failed and its MLflow "
                                    "parent run KILLED; run the same command again to resume it") from None
    metric = config.train.select_metric
    with step("logging the study summary"):
        log_study_summary(study, parent_id, metric)
    best = study.best_trial
    candidate = Candidate(best.user_attrs["model_uri"], best.user_attrs["mlflow_run_id"], tags={
        "study_name": study.study_name, "study_identity": identity_hash(identity), "trial_number": str(best.number),
        "fusion": str(best.params.get("train.fusion", config.train.fusion))})
    # One registration at a time: two tuners finishing together would both find the same Production
    # version (or none), and both register.
    with step("scoring the best trial on the holdout and registering it"), \
            shared_lock(config.tune.storage, f"register {MODEL_NAME}"):
        registration, probs = register_if_better(candidate, cache, splits, force, bundle_backbone)
    summary = TuneSummary(**registration, study_name=study.study_name, study_identity=identity_hash(identity),
                          feature_fingerprint=cache.fingerprint, split_identity=splits.identity, best_trial=best.number,
                          select_metric=metric, best_value=best.value, best_params=best.params)
    write_results(summary, cache, splits.holdout, probs, epoch_curves(best.user_attrs["mlflow_run_id"]))
    if runs_trials:
        client = MlflowClient()
        client.log_dict(parent_id, summary.to_dict(), "holdout_metrics.json")
        client.log_metric(parent_id, "trials_seconds", trials_seconds(study))
        client.set_terminated(parent_id, status="FINISHED")
    return summary
