"""The one end-to-end run of the fast tier: split, cache, a small study, the registry and predict."""

import json
from dataclasses import asdict
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from msc.config import with_overrides
from msc.model.calibrated import ProbabilityRules
from msc.track.locks import machine_lock
from msc.track.logged_model import logged_head
from msc.track.registry import load_msc_model
from msc.track.views import view_key
from msc.train.calibration import fit_temperature
from msc.train.calibration_maps import fit_rules
from msc.train.crossfit import out_of_fold_probabilities
from msc.train.loop import predict_proba
from msc.tune.runs import PARENT_RUN_ATTR
from src import predict, tune


def lock_holding_writes(monkeypatch) -> list[tuple[str, str, set[str]]]:
    """Every tag and metric MlflowClient writes from now on, as (run id, key, the project's machine locks
    held at the time): MLflow inserts one that a run does not have yet, and two tuners inserting the same
    one on their study's shared parent run failed one of them."""
    from msc.core.files import held

    writes = []
    for method in ("set_tag", "log_metric"):
        real = getattr(mlflow.MlflowClient, method)

        def recorded(client, run_id, key, *args, real=real, **kwargs):
            locks = Path(".locks")
            writes.append((run_id, key, {p.name for p in locks.iterdir() if held(p)} if locks.is_dir() else set()))
            return real(client, run_id, key, *args, **kwargs)

        monkeypatch.setattr(mlflow.MlflowClient, method, recorded)
    return writes


def test_study_registers_a_model_that_labels_the_test_set(trained_project, config, cache, splits, capsys, monkeypatch):
    small = with_overrides(config, {"tune.trials": 2, "train.epochs": 2})
    params = trained_project / "params.yaml"
    params.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(small)))))
    writes = lock_holding_writes(monkeypatch)
    assert tune.main(["--params", str(params)]) == 0
    summary = json.loads((trained_project / "results" / "metrics.json").read_text())
    # Every write to the study's parent run (its tags, best_* metrics, skipped_samples, trials_seconds) is
    # made under the study's parent-run lock, which the study's other tuners take too.
    parent = optuna.load_study(study_name=summary["study_name"], storage=f"sqlite:///{trained_project / 'optuna.db'}"
                               ).user_attrs[PARENT_RUN_ATTR]
    lock = machine_lock(f"parent run of study {summary['study_name']}").name
    on_parent = [(key, lock in held_then) for run_id, key, held_then in writes if run_id == parent]
    assert {"best_trial_number", "skipped_samples", "trials_seconds", "mlflow.note.content"} <= {key for key, _ in on_parent}
    assert [key for key, locked in on_parent if not locked] == []
    assert summary["promoted_now"] and summary["version"] == 1 and summary["holdout_samples"] > 0
    version = mlflow.MlflowClient().get_model_version_by_alias("msc", "production")
    assert version.current_stage == "Production" and version.tags["split_identity"] == summary["split_identity"]
    # The UI link opens the experiment's runs in the model-training view, not GenAI's overview.
    experiment_id = mlflow.get_experiment_by_name("msc").experiment_id
    # The saved view of the trials (msc/track/views.py; tests/test_mlflow_views.py) sorts them by objective.
    tune_out = capsys.readouterr().out
    assert (f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?workflowType=machine_learning&"
            f"viewStateShareKey={view_key(summary['study_name'])} (after `mlflow ui --backend-store-uri "
            f"sqlite:///{trained_project / 'mlflow.db'}`)") in tune_out

    # Every reported score carries its interval, and the probabilities their calibration error.
    holdout = summary["holdout"]
    for metric in ("accuracy", "weighted_f1"):
        low, high = holdout[f"{metric}_ci95"]
        assert low <= holdout[metric] <= high and high - low > 0
    assert 0 <= holdout["ece"] <= 1 and 0 <= holdout["ece_uncalibrated"] <= 1
    assert holdout["log_loss"] > 0 and holdout["log_loss_uncalibrated"] > 0
    assert f"log loss {holdout['log_loss']:.4f} ({holdout['log_loss_uncalibrated']:.4f} without)" in tune_out

    assert holdout["ece_ci95"][0] < holdout["ece_ci95"][1]

    # The temperature and the probability rules are fitted on one set of rows, never the holdout: out-of-fold
    # predictions of train + validation (the best trial's config trained again on 5 folds for its kept epochs),
    # or, where those fold models calibrate the head worse than its own rows do, its validation rows; head.json
    # and the version's tag say which, and the registered model applies the rules.
    best = optuna.load_study(study_name=summary["study_name"], storage=f"sqlite:///{trained_project / 'optuna.db'}").best_trial
    trial_uri = best.user_attrs["model_uri"]
    epochs = int(mlflow.get_run(best.user_attrs["mlflow_run_id"]).data.metrics["best_epoch"])
    pool = np.concatenate([splits.train, splits.val])
    head = load_msc_model(trial_uri).head
    candidates = {"out_of_fold": (out_of_fold_probabilities(cache, pool, with_overrides(small, best.params).train, epochs,
                                                            5, small.data.split_seed), cache.labels[pool])}
    candidates.update({name: (predict_proba(head, cache, rows), cache.labels[rows])
                       for name, rows in (("validation", splits.val), ("holdout", splits.holdout))})
    spec = logged_head("models:/msc/Production")[0]
    stored = ProbabilityRules.from_dict(spec.probability_rules)
    assert stored.fitted_on == version.tags["calibration_rows"] in ("out_of_fold", "validation")
    fitted = {name: fit_temperature(*rows) for name, rows in candidates.items()}
    temperature = float(version.tags["temperature"])
    assert temperature == pytest.approx(fitted[stored.fitted_on], rel=1e-4) == pytest.approx(holdout["temperature"])
    assert all(abs(temperature - value) > 1e-3 for name, value in fitted.items() if name != stored.fitted_on)
    expected = fit_rules(*candidates[stored.fitted_on], small.train.select_metric)
    assert stored.calibration.kind == expected.calibration.kind == "vector" == version.tags["calibration"]
    assert np.allclose(stored.calibration.scale, expected.calibration.scale, atol=1e-3)
    assert stored.decision.weights == pytest.approx(expected.decision.weights)
    assert holdout["label_sets"]["0.9"]["coverage"] >= 0 and set(holdout["label_sets"]) == {"0.8", "0.9"}
    frame = pd.DataFrame({"text": ["so happy today", "awful"],
                          "image": [str(p) for p in sorted((Path(config.data.root) / "data").glob("*.jpg"))[:2]]})
    trusted = {"trusted_input": True}
    registered = mlflow.pyfunc.load_model("models:/msc/Production", model_config=trusted).predict(frame)
    trial = mlflow.pyfunc.load_model(trial_uri, model_config=trusted).predict(frame)
    columns = ["p_positive", "p_neutral", "p_negative"]
    probs, labels, _ = stored.predict(trial[columns].to_numpy())
    assert np.allclose(registered[columns].to_numpy(), probs, atol=1e-5)
    assert registered["label"].tolist() == [columns[i].removeprefix("p_") for i in labels]
    issues = pd.read_csv(trained_project / "results" / "label_issues.csv", dtype={"id": str})
    assert sorted(issues["id"]) == sorted(cache.guids[r] for r in pool) and issues["score"].is_monotonic_increasing

    truth = Path(config.data.root) / "cues.csv"  # the sample's true labels, test guids included
    assert predict.main(["--model-uri", "models:/msc/Production", "--params", str(params), "--true-labels",
                         str(truth), "--explain"]) == 0
    out = capsys.readouterr().out
    assert f"against {truth}: accuracy " in out and "expected calibration error" in out and ", log loss " in out
    lines = (trained_project / "results" / "test_with_label.txt").read_text().splitlines()
    test_lines = (Path(config.data.root) / "test_without_label.txt").read_text().splitlines()
    assert lines[0] == "guid,tag" and len(lines) == len(test_lines)
    assert [line.split(",")[0] for line in lines[1:]] == [line.split(",")[0] for line in test_lines[1:]]
    assert {line.split(",")[1] for line in lines[1:]} <= {"positive", "neutral", "negative"}
    # --explain leaves the course file as it is and writes the attributions beside it, row for row.
    explained = pd.read_csv(trained_project / "results" / "test_explanations.csv", dtype={"guid": str})
    assert list(explained.columns) == ["guid", "tag", "p_positive", "p_neutral", "p_negative", "attr_text",
                                       "attr_image", "driver"]
    assert [f"{g},{t}" for g, t in zip(explained["guid"], explained["tag"])] == lines[1:]
    assert set(explained["driver"]) <= {"text", "image", "both"} and explained["attr_text"].abs().sum() > 0


def test_true_labels_that_miss_a_test_guid_are_a_sentence(tmp_path):
    from msc.core.errors import UserError
    from msc.track.inference import read_truth  # src.predict imports these after its arguments
    from msc.train.calibration import score_against

    truth = tmp_path / "truth.csv"
    truth.write_text("guid,label\n1,positive\n")
    labels = pd.DataFrame({"id": ["1", "2"], "label": ["positive", "neutral"], "p_positive": [0.8, 0.1],
                           "p_neutral": [0.1, 0.8], "p_negative": [0.1, 0.1]})
    course = ("positive", "neutral", "negative")
    with pytest.raises(UserError, match="truth.csv.*no label for 1 of the predicted posts \\(2\\)"):
        read_truth(truth, ["1", "2"])
    truth.write_text("guid,label\n1,positive\n2,negative\n")
    assert score_against(labels, read_truth(truth, ["1", "2"]), course, "truth")["test_accuracy"] == 0.5
    truth.write_text("guid,label\n1,positive\n2,sarcastic\n")
    with pytest.raises(UserError, match="truth has the label 'sarcastic', which the model does not predict"):
        score_against(labels, read_truth(truth, ["1", "2"]), course, "truth")
