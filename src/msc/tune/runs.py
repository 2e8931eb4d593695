"""The study's MLflow parent run: created once per study, its summary, and the best trial's curves."""

from __future__ import annotations

from typing import Any

import optuna

from msc.features.cache import FeatureCache
from msc.track.locks import shared_lock
from msc.track.store import git_commit
from msc.tune.objective import EPOCH_PREFIX
from msc.tune.study import identity_hash

PARENT_RUN_ATTR = "mlflow_parent_run_id"


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
