"""Stage ``tune``: an Optuna study over the feature cache, every trial an MLflow child run.

It reads what the earlier stages wrote, the feature cache (``featurize``) and the split
(``split``), and stops with a sentence when either is missing or stale; it never rebuilds them.

A study is one experiment. Its identity is a hash of everything that defines it: the feature
fingerprint, the split, the ``train`` defaults, the search space, the folds and the sampler seed.
The default study name is ``msc-<identity>``, so a changed config gets a fresh study and the same
config resumes its own. A name given with ``--study-name`` is kept as given, for studies shared by
several processes; a stored identity that differs from the current config is refused.

``--trials N`` means the study ends holding N finished (complete or pruned) trials, whoever ran
them: a killed run started again continues, several processes on one RDB storage (PostgreSQL)
share the work, and a trial left RUNNING by a crash is failed through the heartbeat and retried,
never counted twice. The search space lives in params.yaml (``tune``); the objective is
``train.select_metric`` at each trial's kept epoch. After the study, the best trial's model goes
through the registry gate (src/registry.py).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
from rich.console import Console
from rich.live import Live
from rich.table import Table
from sklearn.model_selection import StratifiedKFold

from src import LABELS
from src.config import Config, TuneConfig, flatten, load_config, with_overrides
from src.errors import UserError, cli, step
from src.features import FeatureCache, open_cache
from src.io import atomic_write_text, file_lock
from src.locks import shared_lock
from src.metrics import scalar_metrics
from src.paths import local_folder
from src.split import Splits, load_splits
from src.tracking import absolute_sqlite_url, dumps, git_commit, log_confusion, setup_mlflow, tracking_uri, ui_link
from src.train import train_head

HEARTBEAT_SECONDS = 5  # a RUNNING trial with no heartbeat for GRACE_SECONDS is stale: failed, retried
GRACE_SECONDS = 15
MAX_RETRIES = 2
STORAGE_ATTEMPTS = 4  # opening the Optuna storage: a failure is retried this often before it is reported
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
PARENT_RUN_ATTR = "mlflow_parent_run_id"
IDENTITY_ATTR = "identity"  # the study's identity, stored in its user attributes
RESULTS = Path("results")
EPOCH_PREFIX = "epoch_"  # per-epoch curves in a trial run; the plain metric names hold the kept epoch


class SurplusTrial(Exception):
    """Raised when a racing worker already filled the study: this trial is not needed."""


def study_identity(config: Config, cache: FeatureCache, splits: Splits) -> dict[str, Any]:
    """Everything that defines the experiment a study runs; ``identity_hash`` names it."""
    return {
        "feature_fingerprint": cache.fingerprint,
        "split_identity": splits.identity,
        "train": dataclasses.asdict(config.train),
        "search_space": config.tune.search_space,
        "folds": config.tune.folds,
        "sampler_seed": config.tune.seed,
    }


def identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def check_identity(study: optuna.Study, identity: dict[str, Any], storage_url: str) -> None:
    """Record ``identity`` on a new study; refuse a study stored with another one."""
    stored = study.user_attrs.get(IDENTITY_ATTR)
    if stored is None and not study.get_trials(deepcopy=False):
        study.set_user_attr(IDENTITY_ATTR, identity)  # racing workers of one config write the same value
        return
    if stored == identity:
        return
    differs = sorted(key for key in identity if (stored or {}).get(key) != identity[key])
    raise UserError(
        f"study '{study.study_name}' in {storage_url} belongs to another experiment (it differs in "
        f"{', '.join(differs) if stored else 'everything: it has trials but no stored identity'}); "
        f"use another --study-name, or leave it out to get this config's own study msc-{identity_hash(identity)}"
    )


def open_study(storage_url: str, study_name: str, seed: int, identity: dict[str, Any]) -> optuna.Study:
    """Create or load the study, with heartbeats, retries of crashed trials and a seeded sampler.

    The sampler's seed is ``tune.seed`` plus the number of trials already stored, so a fresh
    study is reproducible and a resumed one does not re-propose its first trials.
    """
    # Heartbeats, retries and the matplotlib plots are "experimental" in Optuna since 2.x.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for attempt in range(STORAGE_ATTEMPTS):
        try:
            storage = optuna.storages.RDBStorage(
                absolute_sqlite_url(storage_url),
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
            )
            study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize",
                                        load_if_exists=True)
            break
        except Exception as error:  # noqa: BLE001 - any storage failure is the user's URL or server
            # Tuners started together on a new database race to create Optuna's schema; the loser
            # sees "duplicate key" or "already exists" once, and finds the schema on a retry.
            if attempt == STORAGE_ATTEMPTS - 1:
                reason = str(error).splitlines()[0][:300]
                raise UserError(f"cannot open the Optuna storage '{storage_url}': {reason}") from None
            time.sleep(1.0 + attempt)
    check_identity(study, identity, storage_url)
    return optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=seed + len(study.trials)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
    )


def one_sqlite_tuner(storage_url: str):
    """For a SQLite storage, a lock that a second tuner on the same file cannot take.

    SQLite has one writer at a time; two tuners on one file fail with "database is locked"
    mid-study. The second one is refused up front instead, pointing at PostgreSQL, which serves
    any number of tuners (``--storage postgresql://...``).
    """
    url = absolute_sqlite_url(storage_url)
    if not url.startswith("sqlite:///"):
        return contextlib.nullcontext()
    database = Path(url.removeprefix("sqlite:///"))
    return file_lock(database.with_name(database.name + ".tuner.lock"), wait=False)


def suggest(trial: optuna.Trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Sample one value per search-space entry; returns dotted overrides for the config."""
    values = {}
    for key, spec in space.items():
        if spec["type"] == "categorical":
            values[key] = trial.suggest_categorical(name=key, choices=spec["choices"])
        elif spec["type"] == "int":
            values[key] = trial.suggest_int(name=key, low=spec["low"], high=spec["high"], step=spec.get("step", 1),
                                            log=spec.get("log", False))
        else:
            values[key] = trial.suggest_float(name=key, low=spec["low"], high=spec["high"], step=spec.get("step"),
                                              log=spec.get("log", False))
    return values


def parent_run_id(study: optuna.Study, storage_url: str, experiment_id: str, identity: dict[str, Any]) -> str:
    """The study's MLflow parent run, created once and kept in the study's user attributes, so
    every thread and every process nests its trials under the same run. Tagged with the study's
    identity; ``study_identity.json`` holds the identity itself."""
    from mlflow import MlflowClient

    client = MlflowClient()
    # Tuners that start together would each create a parent; under the lock, the first does and
    # the others read its id.
    with shared_lock(storage_url, f"parent run of study {study.study_name}"):
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)  # read from the storage, not a cached copy
        if run_id is None:
            tags = {"study_name": study.study_name, "study_identity": identity_hash(identity),
                    "feature_fingerprint": identity["feature_fingerprint"],
                    "split_identity": identity["split_identity"], "git_commit": git_commit()}
            run_id = client.create_run(experiment_id, run_name=f"study-{study.study_name}", tags=tags).info.run_id
            client.log_dict(run_id, identity, "study_identity.json")
            study.set_user_attr(PARENT_RUN_ATTR, run_id)
    return run_id


def cv_score(cache: FeatureCache, splits: Splits, config: Config) -> float:
    """Mean kept-epoch ``train.select_metric`` over ``tune.folds`` stratified folds of train+validation."""
    pool = np.concatenate([splits.train, splits.val])
    folds = StratifiedKFold(n_splits=config.tune.folds, shuffle=True, random_state=config.data.split_seed)
    scores = []
    for train_idx, val_idx in folds.split(pool, cache.labels[pool]):
        result = train_head(cache, pool[train_idx], pool[val_idx], config.train)
        scores.append(result.score(config.train.select_metric))
    return float(np.mean(scores))


class QuietSurplus(logging.Filter):
    """Drops Optuna's warnings about surplus trials: with several tuners, a trial that finds the
    study already full is a normal end, not the failure with a traceback that Optuna reports."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        return not (isinstance(error, SurplusTrial) or "SurplusTrial" in message
                    or (message.startswith("Trial ") and message.endswith(" failed with value None.")))


class Objective:
    """One trial: sample params, train on the cache, log everything to a nested MLflow run."""

    def __init__(self, config: Config, cache: FeatureCache, splits: Splits, experiment_id: str, parent_id: str,
                 n_trials: int):
        self.config, self.cache, self.splits = config, cache, splits
        self.experiment_id, self.parent_id, self.n_trials = experiment_id, parent_id, n_trials
        self.commit = git_commit()

    def guard_surplus(self, trial: optuna.Trial) -> None:
        busy = FINISHED + (optuna.trial.TrialState.RUNNING,)
        earlier = [t for t in trial.study.get_trials(deepcopy=False, states=busy) if t.number < trial.number]
        if len(earlier) >= self.n_trials:
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"trial {trial.number}: the study already holds {self.n_trials} trials")

    def __call__(self, trial: optuna.Trial) -> float:
        import mlflow

        self.guard_surplus(trial)
        config = with_overrides(self.config, suggest(trial, self.config.tune.search_space))
        tags = {
            "mlflow.parentRunId": self.parent_id,
            "study_name": trial.study.study_name,
            "trial_number": str(trial.number),
            "fusion": config.train.fusion,
            "data_fingerprint": self.cache.manifest.get("data_fingerprint", "unknown"),
            "feature_fingerprint": self.cache.fingerprint,
            "git_commit": self.commit,
        }
        with mlflow.start_run(experiment_id=self.experiment_id, run_name=f"trial-{trial.number}", tags=tags) as run:
            trial.set_user_attr("mlflow_run_id", run.info.run_id)
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            mlflow.log_params(flatten(config))

            def on_epoch(epoch: int, scalars: dict[str, float]) -> None:
                # Curves under epoch_*: the plain names hold the kept epoch, the column users sort by.
                mlflow.log_metrics({f"{EPOCH_PREFIX}{k}": v for k, v in scalars.items()}, step=epoch)
                trial.report(scalars[config.train.select_metric], step=epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

            try:
                result = train_head(self.cache, self.splits.train, self.splits.val, config.train, on_epoch)
            except optuna.TrialPruned:
                # A normal outcome, not a crash: FINISHED (no red cross in the UI), told apart from a
                # completed trial by its tag, and from a failed one (FAILED) by its status.
                mlflow.set_tags({"optuna_state": "PRUNED", "mlflow.note.content": "Pruned by Optuna's median pruner."})
                mlflow.end_run(status="FINISHED")
                raise
            score = result.score(config.train.select_metric)
            mlflow.log_metrics({"best_epoch": result.best_epoch, **scalar_metrics(result.val_scores, "val_")})
            if self.config.tune.folds > 1:
                score = cv_score(self.cache, self.splits, config)
                mlflow.log_metric(f"cv_{config.train.select_metric}", score)
            mlflow.log_metric("objective", score)
            log_confusion(result.val_scores["confusion"], "val")
            from src.serving import log_trial_model

            info = log_trial_model(result.head, config.train, self.cache.dim, config.model.backbone,
                                   config.model.revision, config.features.max_text_tokens)
            trial.set_user_attr("model_uri", info.model_uri)
            mlflow.set_tag("optuna_state", "COMPLETE")
        return score


def log_skipped(parent_id: str, cache: FeatureCache) -> None:
    """How many labelled samples featurize dropped (data.on_error: skip), and which, on the parent run."""
    from mlflow import MlflowClient

    skipped = cache.manifest.get("skipped", [])
    client = MlflowClient()
    client.log_metric(parent_id, "skipped_samples", len(skipped))
    if skipped:
        client.log_dict(parent_id, skipped, "skipped_samples.json")


def trials_table(study: optuna.Study, limit: int = 12) -> Table:
    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in FINISHED for t in trials)
    table = Table(title=f"study {study.study_name}: {finished} finished of {len(trials)} trials")
    for column in ("#", "state", "fusion", "lr", "dropout", "value"):
        table.add_column(column, justify="right" if column in ("#", "lr", "dropout", "value") else "left")
    for t in trials[-limit:]:
        table.add_row(str(t.number), t.state.name, str(t.params.get("train.fusion", "")),
                      f"{t.params['train.lr']:.2e}" if "train.lr" in t.params else "",
                      f"{t.params['train.dropout']:.2f}" if "train.dropout" in t.params else "",
                      "" if t.value is None else f"{t.value:.4f}")
    return table


def finished_trials(study: optuna.Study) -> int:
    return sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))


def trials_seconds(study: optuna.Study) -> float:
    """Time spent in the study's finished trials, summed: what the study cost, whatever the gaps
    between the `tune` commands that ran it."""
    return sum((t.datetime_complete - t.datetime_start).total_seconds() for t in study.get_trials(deepcopy=False)
               if t.state in FINISHED and t.datetime_start and t.datetime_complete)


def trial_line(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    """One line per ended trial, for logs where no terminal shows the live table (DVC, CI, nohup)."""
    value = "" if trial.value is None else f" {trial.value:.4f}"
    params = ", ".join(f"{k.removeprefix('train.')}={v:.3g}" if isinstance(v, float) else f"{k.removeprefix('train.')}={v}"
                       for k, v in trial.params.items())
    return (f"trial {trial.number} {trial.state.name.lower()}{value} ({params}); "
            f"{finished_trials(study)} finished in study {study.study_name}")


def run_study_with_progress(study: optuna.Study, objective: Objective, settings: TuneConfig, console: Console) -> None:
    """``run_study`` with a live table on a terminal, else one printed line per ended trial."""
    if console.is_terminal:
        with Live(trials_table(study), console=console, refresh_per_second=2) as live:
            run_study(study, objective, settings.trials, settings.n_jobs, lambda s, _t: live.update(trials_table(s)))
    else:
        def report(s: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
            if not t.user_attrs.get("surplus"):
                print(trial_line(s, t), flush=True)

        run_study(study, objective, settings.trials, settings.n_jobs, report)


def run_study(study: optuna.Study, objective: Objective, n_trials: int, n_jobs: int,
              on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None) -> None:
    """Run trials until the study holds ``n_trials`` finished ones, waiting on other workers'."""
    while True:
        optuna.storages.fail_stale_trials(study)  # crashed trials: FAIL, and a WAITING retry
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in trials)
        running = sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)
        if finished >= n_trials:
            return
        missing = n_trials - finished - running
        if missing <= 0:
            time.sleep(1.0)  # the rest is running elsewhere; wait for it to finish or go stale
            continue
        study.optimize(objective, n_trials=missing, n_jobs=n_jobs, catch=(SurplusTrial,),
                       callbacks=[on_trial] if on_trial else None, gc_after_trial=False, show_progress_bar=False)


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


def write_results(summary: dict, cache: FeatureCache, holdout_rows: np.ndarray, probs: np.ndarray,
                  curves: list[dict[str, float]]) -> None:
    """results/metrics.json, holdout_predictions.csv (DVC confusion plot), training_curves.csv."""
    atomic_write_text(RESULTS / "metrics.json", dumps(summary))
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["guid", "actual", "predicted", *(f"p_{label}" for label in LABELS)])
    for row, p in zip(holdout_rows, probs):
        writer.writerow([cache.guids[row], LABELS[cache.labels[row]], LABELS[int(p.argmax())], *(f"{x:.4f}" for x in p)])
    atomic_write_text(RESULTS / "holdout_predictions.csv", rows.getvalue())
    if curves:
        rows = io.StringIO()
        writer = csv.DictWriter(rows, fieldnames=list(curves[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(curves)
        atomic_write_text(RESULTS / "training_curves.csv", rows.getvalue())


def epoch_curves(run_id: str) -> list[dict[str, float]]:
    """The best trial's per-epoch metrics, read back from MLflow."""
    from mlflow import MlflowClient

    client = MlflowClient()
    keys = ["train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_weighted_f1", "val_macro_f1"]
    by_epoch: dict[int, dict[str, float]] = {}
    for key in keys:
        for point in client.get_metric_history(run_id, f"{EPOCH_PREFIX}{key}"):
            by_epoch.setdefault(point.step, {"epoch": point.step})[key] = point.value
    return [by_epoch[e] for e in sorted(by_epoch)]


def tune(config: Config, force: bool = False, console: Console | None = None) -> dict:
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


def run_tuning(config: Config, force: bool, console: Console | None, bundle_backbone: str | None) -> dict:
    """The study, its summary and the registration; ``tune`` holds the storage's lock around it."""
    from mlflow import MlflowClient

    from src.registry import MODEL_NAME, Candidate, register_if_better

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
        MlflowClient().update_run(parent_id, status="RUNNING")
        with step(f"running the trials of study {study_name}"):
            run_study_with_progress(study, objective, config.tune, console)
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
        summary, probs = register_if_better(candidate, cache, splits, force, bundle_backbone)
    summary.update({"study_name": study.study_name, "study_identity": identity_hash(identity),
                    "feature_fingerprint": cache.fingerprint, "split_identity": splits.identity,
                    "best_trial": best.number, "select_metric": metric, f"best_{metric}": best.value,
                    "best_params": best.params})
    write_results(summary, cache, splits.holdout, probs, epoch_curves(best.user_attrs["mlflow_run_id"]))
    if runs_trials:
        client = MlflowClient()
        client.log_dict(parent_id, summary, "holdout_metrics.json")
        client.log_metric(parent_id, "trials_seconds", trials_seconds(study))
        client.set_terminated(parent_id, status="FINISHED")
    return summary


def holdout_line(holdout: dict) -> str:
    """The holdout scores with their 95 % bootstrap intervals and the calibration error."""
    def scored(name: str, key: str) -> str:
        low, high = holdout[f"{key}_ci95"]
        return f"{name} {holdout[key]:.4f} [{low:.4f}, {high:.4f}]"

    return (f"{scored('weighted F1', 'weighted_f1')}, {scored('accuracy', 'accuracy')} (95 % bootstrap intervals), "
            f"ECE {holdout['ece']:.4f} at temperature {holdout['temperature']:.3f} ({holdout['ece_uncalibrated']:.4f} "
            "without)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tune fusion heads with Optuna; log to MLflow; register the best.")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--trials", type=int, help="finished trials the study ends with (default: tune.trials)")
    parser.add_argument("--storage", help="Optuna RDB URL (default: tune.storage), e.g. postgresql://host/db")
    parser.add_argument("--study-name", help="a shared study's name, kept as given (default: tune.study_name, "
                        "else msc-<identity of this config>)")
    parser.add_argument("--n-jobs", type=int, help="parallel trials in this process (default: tune.n_jobs)")
    parser.add_argument("--force", action="store_true", help="register the best model without comparing it with "
                        "Production")
    args = parser.parse_args(argv)
    config = load_config(args.params)
    overrides = {f"tune.{k}": v for k, v in (("trials", args.trials), ("storage", args.storage),
                                              ("study_name", args.study_name), ("n_jobs", args.n_jobs)) if v is not None}
    config = with_overrides(config, overrides)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:
        handler.addFilter(QuietSurplus())
    summary = tune(config, force=args.force)
    metric = summary["select_metric"]
    print(f"study {summary['study_name']}: best trial {summary['best_trial']} ({metric} {summary[f'best_{metric}']:.4f}). "
          f"{summary['gate'][0].upper()}{summary['gate'][1:]}. Production is msc version {summary['version']}: "
          f"{holdout_line(summary['holdout'])} on {summary['holdout_samples']} holdout samples; wrote "
          f"{RESULTS / 'metrics.json'}")
    uri = tracking_uri()
    print(f"compare the trials in the MLflow UI: {ui_link(setup_mlflow())}"
          + ("" if uri.startswith(("http://", "https://")) else f" (after `mlflow ui --backend-store-uri {uri}`)"))
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
