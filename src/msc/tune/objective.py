"""One trial: sample params, train on the cache, log everything to a nested MLflow run."""

from __future__ import annotations

import os
import socket

import numpy as np
import optuna

from msc.config import Config, flatten, with_overrides
from msc.features.cache import FeatureCache
from msc.features.splits import Splits
from msc.track.figures import log_confusion
from msc.track.logged_model import log_trial_model
from msc.track.store import git_commit
from msc.train.crossfit import pool_folds
from msc.train.loop import train_head
from msc.train.metrics import scalar_metrics
from msc.tune.study import suggest

EPOCH_PREFIX = "epoch_"  # per-epoch curves in a trial run; the plain metric names hold the kept epoch
# Trial user attributes, read from the study's best trial: its kept epoch (the out-of-fold refit trains
# this long) and its per-epoch curves (results/training_curves.csv), as trained, not read back from MLflow.
BEST_EPOCH_ATTR = "best_epoch"
CURVES_ATTR = "epoch_curves"
CURVES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_weighted_f1", "val_macro_f1")


def cv_score(cache: FeatureCache, splits: Splits, config: Config) -> float:
    """Mean kept-epoch ``train.select_metric`` over ``tune.folds`` stratified folds of train+validation."""
    pool = np.concatenate([splits.train, splits.val])
    scores = []
    for train_idx, val_idx in pool_folds(cache, pool, config.tune.folds, config.data.split_seed):
        result = train_head(cache, pool[train_idx], pool[val_idx], config.train)
        scores.append(result.score(config.train.select_metric))
    return float(np.mean(scores))


class Objective:
    """One trial: sample params, train on the cache, log everything to a nested MLflow run."""

    def __init__(self, config: Config, cache: FeatureCache, splits: Splits, experiment_id: str, parent_id: str):
        self.config, self.cache, self.splits = config, cache, splits
        self.experiment_id, self.parent_id = experiment_id, parent_id
        self.commit = git_commit()

    def __call__(self, trial: optuna.Trial) -> float:
        import mlflow

        config = with_overrides(self.config, suggest(trial, self.config.tune.search_space))
        tags = {
            "mlflow.parentRunId": self.parent_id,
            "study_name": trial.study.study_name,
            "trial_number": str(trial.number),
            "fusion": config.train.fusion,
            "data_fingerprint": self.cache.manifest.data_fingerprint,
            "feature_fingerprint": self.cache.fingerprint,
            "git_commit": self.commit,
        }
        with mlflow.start_run(experiment_id=self.experiment_id, run_name=f"trial-{trial.number}", tags=tags) as run:
            trial.set_user_attr("mlflow_run_id", run.info.run_id)
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            # backbone_identity: the commit model.revision named when featurize ran, or the folder's digest
            mlflow.log_params({**flatten(config), "backbone_identity": self.cache.manifest.backbone_identity})

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
            trial.set_user_attr(BEST_EPOCH_ATTR, result.best_epoch)
            trial.set_user_attr(CURVES_ATTR, [{"epoch": epoch, **{key: scalars[key] for key in CURVES}}
                                              for epoch, scalars in enumerate(result.history, start=1)])
            if self.config.tune.folds > 1:
                score = cv_score(self.cache, self.splits, config)
                mlflow.log_metric(f"cv_{config.train.select_metric}", score)
            mlflow.log_metric("objective", score)
            log_confusion(result.val_scores["confusion"], "val", self.cache.label_names)
            info = log_trial_model(result.head, config.train, self.cache.dim, config.model.backbone,
                                   config.model.revision, config.features.max_text_tokens, self.cache.label_names,
                                   config.model.family, self.cache.manifest.backbone_identity,
                                   (config.model.runtime, config.model.precision))
            trial.set_user_attr("model_uri", info.model_uri)
            mlflow.set_tag("optuna_state", "COMPLETE")
        return score
