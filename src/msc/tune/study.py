"""The Optuna study: its identity, its storage, the search space, and running it to N finished trials.

A study is one experiment. Its identity is a hash of everything that defines it: the feature
fingerprint, the split, the ``train`` defaults, the search space, the folds and the sampler seed.
The default study name is ``msc-<identity>``, so a changed config gets a fresh study and the same
config resumes its own. A name given with ``--study-name`` is kept as given, for studies shared by
several processes; a stored identity that differs from the current config is refused.

``--trials N`` means the study ends holding N finished (complete or pruned) trials, whoever ran
them: a killed run started again continues, several processes on one RDB storage (PostgreSQL)
share the work, and a trial left RUNNING by a crash is failed through the heartbeat and retried,
never counted twice.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna

from msc.config import Config
from msc.core.errors import UserError
from msc.core.files import file_lock
from msc.features.cache import FeatureCache
from msc.features.splits import Splits
from msc.track.locks import shared_lock
from msc.track.store import absolute_sqlite_url

HEARTBEAT_SECONDS = 5  # a RUNNING trial with no heartbeat for GRACE_SECONDS is stale: failed, retried
GRACE_SECONDS = 15
MAX_RETRIES = 2
STORAGE_ATTEMPTS = 4  # opening the Optuna storage: a failure is retried this often before it is reported
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
IDENTITY_ATTR = "identity"  # the study's identity, stored in its user attributes


# The trial-slot lock a worker thread holds from claiming a slot until Optuna has created its trial.
SLOT = threading.local()


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


def finished_trials(study: optuna.Study) -> int:
    return sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))


def trials_seconds(study: optuna.Study) -> float:
    """Time spent in the study's finished trials, summed: what the study cost, whatever the gaps
    between the `tune` commands that ran it."""
    return sum((t.datetime_complete - t.datetime_start).total_seconds() for t in study.get_trials(deepcopy=False)
               if t.state in FINISHED and t.datetime_start and t.datetime_complete)


def claim_slot(study: optuna.Study, n_trials: int, storage_url: str) -> bool | None:
    """Claim the right to start one trial, under the study's trial-slot lock shared by every tuner
    (msc/track/locks.py): True (the lock stays held until ``release_slot``), False when the other
    slots are all running elsewhere (wait), None when the study holds ``n_trials`` finished trials.

    So no tuner ever starts a trial the study does not need: there is no surplus trial to fail. A
    trial whose process died is failed under the same lock (its heartbeat stopped), and the retry
    Optuna queues for it is what the next claimed slot runs (``study.ask`` takes a waiting trial first)."""
    lock = shared_lock(storage_url, f"trial slots of study {study.study_name}")
    lock.__enter__()
    try:
        optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in trials)
        running = sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)
        claimed = None if finished >= n_trials else finished + running < n_trials
    except BaseException:
        lock.__exit__(None, None, None)
        raise
    if claimed:
        SLOT.lock = lock
    else:
        lock.__exit__(None, None, None)
    return claimed


def release_slot() -> None:
    """Release this thread's claimed slot, once Optuna has created its trial (RUNNING, so the next
    claim counts it), or when it never did."""
    lock, SLOT.lock = getattr(SLOT, "lock", None), None
    if lock is not None:
        lock.__exit__(None, None, None)


def run_study(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int, n_jobs: int,
              storage_url: str, on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None) -> None:
    """Run trials until the study holds ``n_trials`` finished ones, waiting on other workers', in
    ``n_jobs`` threads; each starts a trial only after claiming a slot for it. An exception in any
    thread (Ctrl-C or SIGTERM reach the main one) stops every thread before its next trial."""
    stop = threading.Event()

    def run_trial(trial: optuna.Trial) -> float:
        release_slot()  # the trial exists: other tuners may claim the next slot
        return objective(trial)

    def work() -> None:
        while not stop.is_set():
            claimed = claim_slot(study, n_trials, storage_url)
            if claimed is None:
                return
            if not claimed:
                stop.wait(1.0)  # the rest is running elsewhere; wait for it to finish or go stale
                continue
            try:
                study.optimize(run_trial, n_trials=1, callbacks=[on_trial] if on_trial else None,
                               gc_after_trial=False, show_progress_bar=False)
            finally:
                release_slot()  # in case the trial never started

    if n_jobs == 1:
        return work()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=n_jobs)
    futures = [pool.submit(work) for _ in range(n_jobs)]
    try:
        done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        for future in done:
            future.result()  # the first error, raised here in the main thread
    finally:
        stop.set()  # on an error or an interrupt, no thread starts another trial
        pool.shutdown(wait=True)
