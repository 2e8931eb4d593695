"""The tune stage's work: the study to ``tune.trials`` finished trials, then the registry gate.

It reads what the earlier stages wrote, the feature cache and the split, and stops with a sentence
when either is missing or stale; it never rebuilds them.
"""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console

from msc.config import Config, with_overrides
from msc.core.errors import UserError, step
from msc.core.paths import local_folder
from msc.features.cache import open_cache
from msc.features.splits import load_splits
from msc.model.heads import HEADS
from msc.track.locks import shared_lock
from msc.track.promotion import log_label_issues
from msc.track.registry import MODEL_NAME, Candidate
from msc.track.store import setup_mlflow
from msc.track.summary import TuneSummary
from msc.train.crossfit import Refit
from msc.tune.labels import for_labels
from msc.tune.objective import BEST_EPOCH_ATTR, CURVES_ATTR, Objective
from msc.tune.progress import run_study_with_progress
from msc.tune.registration import register_if_better
from msc.tune.runs import close_dead_runs, log_skipped, log_study_summary, parent_run_id, parent_run_lock
from msc.tune.study import finished_trials, identity_hash, one_sqlite_tuner, open_study, study_identity, trials_seconds
from msc.tune.summary import TuneOutcome, tune_outcome


def check_token_heads(config: Config, cache) -> None:
    """Refuse, before any trial, a token head that ``train.fusion`` or the search space can pick on a
    pooled-only cache (features.token_states: false)."""
    spec = config.tune.search_space.get("train.fusion", {})
    fusions = {config.train.fusion, *(spec.get("choices", []) if isinstance(spec, dict) else [])}
    token_heads = sorted(f for f in fusions if f in HEADS and HEADS[f].uses_tokens)
    if token_heads:
        cache.require_token_states(f"train.fusion {' and '.join(token_heads)} (in train.fusion or "
                                   "tune.search_space.train.fusion.choices)")

def tune(config: Config, force: bool = False, console: Console | None = None) -> TuneOutcome:
    """Run the study to ``tune.trials`` finished trials, then put the best through the registry gate; the
    stage writes the outcome (``msc.tune.summary.write_results``)."""
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


def run_tuning(config: Config, force: bool, console: Console | None, bundle_backbone: str | None) -> TuneOutcome:
    """The study, its summary and the registration; ``tune`` holds the storage's lock around it.

    However the command ends, the study's MLflow parent run ends with it: FINISHED, KILLED on Ctrl-C or
    SIGTERM, FAILED on an error. Trial runs that a killed process left RUNNING are closed here, at the
    start and again after the trials (``close_dead_runs``), whichever tuner of the study gets there."""
    from mlflow import MlflowClient

    with step("opening the feature cache and the split"):
        cache = open_cache(config.data, config.model, config.features, config.train.device)
        splits = load_splits(config.data, cache)
        config, warning = for_labels(config, cache.label_names)
        check_token_heads(config, cache)
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr)
    identity = study_identity(config, cache, splits)
    study_name = config.tune.study_name or f"msc-{identity_hash(identity)}"
    with step(f"opening study {study_name} in {config.tune.storage} and the MLflow store"):
        study = open_study(config.tune.storage, study_name, config.tune.seed, identity)
        experiment_id = setup_mlflow()
        parent_id = parent_run_id(study, config.tune.storage, experiment_id, identity)
        with parent_run_lock(config.tune.storage, study_name):  # tuners that start together write the same tags
            report_closed(close_dead_runs(study, parent_id))
            log_skipped(parent_id, cache)
    client = MlflowClient()
    # A complete study runs nothing: its parent run is left as it was, so that MLflow's duration
    # (first start to last end) does not grow by the time between two `tune` commands.
    runs_trials = finished_trials(study) < config.tune.trials
    try:
        if runs_trials:
            client.update_run(parent_id, status="RUNNING")  # reopened when a study resumes
            with step(f"running the trials of study {study_name}"):
                run_study_with_progress(study, Objective(config, cache, splits, experiment_id, parent_id),
                                        config.tune, console or Console())
        with parent_run_lock(config.tune.storage, study_name):  # and tuners that finish together
            report_closed(close_dead_runs(study, parent_id))  # also a killed tuner's, whose trial this one retried
            outcome = summarise_and_register(config, study, identity, cache, splits, parent_id, force, bundle_backbone)
            if runs_trials:
                client.log_dict(parent_id, outcome.summary.to_dict(), "holdout_metrics.json")
                client.log_metric(parent_id, "trials_seconds", trials_seconds(study))
    except KeyboardInterrupt:
        # Optuna has failed a running trial (its MLflow run ends FAILED); the parent ends KILLED.
        client.set_terminated(parent_id, status="KILLED")
        raise KeyboardInterrupt(f"study {study_name} stopped: a trial it was running is marked failed and its MLflow "
                                "parent run KILLED; run the same command again to resume it") from None
    except BaseException:
        client.set_terminated(parent_id, status="FAILED")
        raise
    # Also when no trial ran: a killed or failed tune left the parent RUNNING, KILLED or FAILED, and the study
    # it stands for has now finished. It ends when the last trial did, so its duration stays the study's.
    if runs_trials or client.get_run(parent_id).info.status != "FINISHED":
        client.set_terminated(parent_id, status="FINISHED", end_time=None if runs_trials else last_trial_end_ms(study))
    return outcome


def report_closed(closed: list[str]) -> None:
    for line in closed:
        print(f"closed the MLflow trial {line}: its process had died", file=sys.stderr)


def last_trial_end_ms(study) -> int | None:
    ends = [t.datetime_complete for t in study.get_trials(deepcopy=False) if t.datetime_complete]
    return int(max(ends).timestamp() * 1000) if ends else None


def summarise_and_register(config: Config, study, identity: dict, cache, splits, parent_id: str, force: bool,
                           bundle_backbone: str | None) -> TuneOutcome:
    """The study's summary on its parent run, the best trial through the registry gate, and the outcome; the
    label issues of the model in Production go to the parent run too."""
    from mlflow import MlflowClient

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
            shared_lock(config.tune.storage, f"register {MODEL_NAME}",
                        waiting=f"waiting for another tuner that is registering a model as '{MODEL_NAME}' (one "
                                "registration at a time); this one scores and registers its best trial next"):
        registered = register_if_better(candidate, cache, splits, force, bundle_backbone, candidate_refit(config, best),
                                        select_metric=metric)
    log_label_issues(MlflowClient(), parent_id, registered.label_issues)  # the study's parent run
    summary = TuneSummary(registered.registration, study_name=study.study_name, study_identity=identity_hash(identity),
                          feature_fingerprint=cache.fingerprint, split_identity=splits.identity, best_trial=best.number,
                          select_metric=metric, best_value=best.value, best_params=best.params)
    return tune_outcome(summary, cache, splits.holdout, registered, best.user_attrs.get(CURVES_ATTR, []))


def candidate_refit(config: Config, best) -> Refit | None:
    """How to train the best trial's configuration again for its out-of-fold calibration rows: its
    sampled values over the config, for its kept epoch (None when the trial recorded none)."""
    epochs = best.user_attrs.get(BEST_EPOCH_ATTR)
    if epochs is None:  # a trial run before its kept epoch was a trial attribute
        print(f"warning: trial {best.number} recorded no best_epoch, so its temperature and probability rules are "
              "fitted on the validation split, not on out-of-fold rows", file=sys.stderr)
        return None
    return Refit(with_overrides(config, best.params).train, int(epochs), config.register.calibration_folds,
                 config.data.split_seed)
