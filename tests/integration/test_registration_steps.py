"""Registration in steps (issue 31, item 1): the candidate and the Production version it is compared
with are scored from their head.json and weights on the cached features, loading no backbone; the
result is a typed Registration that the tune summary holds, written flat into metrics.json as before;
the kept epoch and the curves come from the best trial's Optuna attributes."""

import csv
import io
import json

import mlflow
import optuna
import pandas as pd

from msc.config import with_overrides
from msc.core.handoff import read_handoff
from msc.model import backbone, onnx_towers, pyfunc
from msc.track.registry import load_msc_model
from msc.track.summary import TuneSummary
from msc.train import loop
from msc.tune import registration, runner
from msc.tune.objective import BEST_EPOCH_ATTR, CURVES, CURVES_ATTR, EPOCH_PREFIX
from msc.tune.runner import tune
from msc.tune.summary import write_results

# metrics.json's keys, as before Registration existed (CONTRACT.md, tests/golden/expected/metrics.json)
METRICS_KEYS = {"schema", "model", "version", "promoted_now", "gate", "compared_with_version", "holdout_samples",
                "holdout", "candidate_holdout_weighted_f1", "study_name", "study_identity", "feature_fingerprint",
                "split_identity", "best_trial", "select_metric", "best_value", "best_params"}


def backbone_loads_while_scoring(monkeypatch):
    """The load_backbone calls, by every module that imports it for models and training, made while
    registration scores and gates: inside ``register_if_better`` but outside ``record_promotion``, whose
    logging of the registered copy loads it once to check the input example (MLflow's log_model does).
    Returns the list of calls and the wrapper that opens the counting window around a function."""
    calls, real, scoring = [], backbone.load_backbone, [False]

    def counting(name, *args, **kwargs):
        if scoring[0]:
            calls.append(name)
        return real(name, *args, **kwargs)

    def while_scoring(step, active: bool):
        def run(*args, **kwargs):
            before, scoring[0] = scoring[0], active
            try:
                return step(*args, **kwargs)
            finally:
                scoring[0] = before
        return run

    for module in (backbone, pyfunc, onnx_towers, loop):  # onnx_towers: the pyfunc's backbone by model.runtime
        monkeypatch.setattr(module, "load_backbone", counting)
    monkeypatch.setattr(registration, "register_if_better", while_scoring(registration.register_if_better, True))
    monkeypatch.setattr(registration, "record_promotion", while_scoring(registration.record_promotion, False))
    monkeypatch.setattr(runner, "register_if_better", registration.register_if_better)
    return calls, lambda step: while_scoring(step, True)


def test_registration_scores_both_models_without_loading_a_backbone(trained_project, config, cache, splits, monkeypatch):
    # One epoch and no out-of-fold refits: what is counted is scoring, and the default tier stays quick.
    small = with_overrides(config, {"tune.trials": 1, "train.epochs": 1, "register.calibration_folds": 0})
    loads, counted = backbone_loads_while_scoring(monkeypatch)
    outcome = tune(small)
    write_results(trained_project / "results", outcome)  # what src.tune writes
    first = outcome.summary
    check_summary_and_trial_attributes(trained_project, first)
    # No out-of-fold rows (calibration_folds 0): the validation rows are ranked, with the head's own probabilities.
    assert sorted(pd.read_csv(io.StringIO(outcome.label_issues), dtype={"id": str})["id"]) ==\
        sorted(cache.guids[r] for r in splits.val)
    second_outcome = tune(with_overrides(small, {"tune.study_name": "second"}))  # comparable: Production is scored too
    second = second_outcome.summary
    assert first.registration.promoted_now and second.registration.compared_with_version == 1
    # Production stays version 1: what the stage reports are its rules' labels and its logged label issues.
    assert not second.registration.promoted_now and second_outcome.label_issues == outcome.label_issues
    assert second.registration.holdout == first.registration.holdout
    assert loads == [], "the candidate and Production were scored from their heads alone"
    # What registration did before: the whole pyfunc, backbone included, to reach its head.
    counted(load_msc_model)("models:/msc/1")
    assert len(loads) == 1, "the count sees a backbone load"


def check_summary_and_trial_attributes(project, summary) -> None:
    """metrics.json keeps its flat keys and reads back as the summary; best_epoch and the curves are the
    best trial's attributes, the same numbers its MLflow run logged, and training_curves.csv has them."""
    written = json.loads((project / "results" / "metrics.json").read_text())
    assert set(written) == METRICS_KEYS
    assert written["version"] == summary.registration.version == 1
    assert read_handoff(TuneSummary, project / "results" / "metrics.json") ==\
        TuneSummary.from_dict(json.loads(json.dumps(summary.to_dict())))
    study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{project / 'optuna.db'}")
    best = study.best_trial
    curves = best.user_attrs[CURVES_ATTR]
    assert best.user_attrs[BEST_EPOCH_ATTR] == 1 and len(curves) == 1
    logged = mlflow.MlflowClient().get_metric_history(best.user_attrs["mlflow_run_id"], f"{EPOCH_PREFIX}val_loss")
    assert [row["val_loss"] for row in curves] == [point.value for point in logged]
    with (project / "results" / "training_curves.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [1] and set(rows[0]) == {"epoch", *CURVES}
