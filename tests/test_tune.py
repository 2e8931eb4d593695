"""The study, its MLflow runs, the registry and predict, on the sample, in a temporary project."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml

from src.config import with_overrides
from src.tune import FINISHED, tune
from tests.conftest import REPO

TRIALS = 4


def small(config, **extra):
    return with_overrides(config, {"tune.trials": TRIALS, "train.epochs": 3, **extra})


def test_every_trial_is_a_child_run_with_metrics_confusion_and_model(project, config):
    summary = tune(small(config))
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("msc")
    assert experiment.artifact_location == (project / "mlruns").as_uri()
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "study_name" in r.data.tags and "trial_number" not in r.data.tags]
    children = [r for r in runs if "trial_number" in r.data.tags]
    assert len(parents) == 1 and len(children) == TRIALS
    parent = parents[0]
    assert parent.data.tags["study_name"] == "msc" and "best_val_weighted_f1" in parent.data.metrics
    parent_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"optimization_history.png", "best_trial.json", "holdout_metrics.json"} <= parent_artifacts
    models = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    runs_with_models = {m.source_run_id for m in models}
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["fusion"] in {"late", "early", "cross_attention", "gated"}
        assert child.data.params["train.fusion"] == child.data.tags["fusion"]
        assert set(child.data.params) == set(children[0].data.params), "same param names in every run"
        if child.info.status == "FINISHED":
            history = client.get_metric_history(child.info.run_id, "val_weighted_f1")
            assert [m.step for m in history] == list(range(1, len(history) + 1))
            assert any("confusion" in a.path and a.path.endswith(".png") for a in client.list_artifacts(child.info.run_id))
            assert child.info.run_id in runs_with_models
        else:
            assert child.info.status == "KILLED" and child.data.tags["optuna_state"] == "PRUNED"
    metrics = json.loads((project / "results" / "metrics.json").read_text())
    assert metrics["version"] == summary["version"] == 1 and metrics["promoted_now"]
    assert set(metrics["holdout"]) >= {"accuracy", "weighted_f1", "macro_f1", "f1_neutral"}
    version = client.get_model_version_by_alias("msc", "production")
    assert version.current_stage == "Production"
    assert float(version.tags["holdout_weighted_f1"]) == pytest.approx(metrics["holdout"]["weighted_f1"], abs=1e-6)


def test_predict_from_the_registry_and_promotion_rule(project, config):
    from src import predict

    tune(small(config))
    out = project / "results" / "test_with_label.txt"
    params = project / "params.yaml"
    params.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(config)))))
    for uri in ("models:/msc/Production", "models:/msc@production"):
        assert predict.main(["--model-uri", uri, "--params", str(params)]) == 0
        lines = out.read_text().splitlines()
        test_lines = (Path(config.data.root) / "test_without_label.txt").read_text().splitlines()
        assert lines[0] == "guid,tag" and len(lines) == len(test_lines)
        assert [line.split(",")[0] for line in lines[1:]] == [line.split(",")[0] for line in test_lines[1:]]
        assert all(line.split(",")[1] in {"positive", "neutral", "negative"} for line in lines[1:])
    # runs:/ URIs and a local model folder load too.
    run_id = mlflow.MlflowClient().get_model_version_by_alias("msc", "production").run_id
    local = mlflow.artifacts.download_artifacts("models:/msc@production", dst_path=str(project / "exported"))
    for uri in (f"runs:/{run_id}/model", local):
        out.unlink()
        assert predict.main(["--model-uri", uri, "--params", str(params)]) == 0, uri
        assert len(out.read_text().splitlines()) == len(test_lines)
    # A second study under another name: registered only if better on the holdout, or forced.
    summary = tune(small(config, **{"tune.study_name": "second", "tune.trials": 1}))
    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name='msc'")
    assert len(versions) == (2 if summary["promoted_now"] else 1)
    forced = tune(small(config, **{"tune.study_name": "second", "tune.trials": 1}), force=True)
    assert forced["promoted_now"]
    stages = {str(v.version): v.current_stage for v in client.search_model_versions("name='msc'")}
    assert stages[str(forced["version"])] == "Production"
    assert sum(stage == "Production" for stage in stages.values()) == 1


def test_unknown_model_uri_lists_registered_models(project, config, capsys):
    from src import predict

    tune(small(config, **{"tune.trials": 1}))
    params = project / "params.yaml"
    params.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(config)))))
    assert predict.main(["--model-uri", "models:/nope/Production", "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert "cannot load model 'models:/nope/Production'" in err and "msc (versions 1; production -> 1)" in err
    assert not (project / "results" / "test_with_label.txt").exists()


def write_params(project, config, **extra):
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(with_overrides(config, extra))))))
    return path


def start_tuner(project, *args):
    return subprocess.Popen([sys.executable, "-m", "src.tune", *args], cwd=project,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_trials(storage: str, ready, timeout: float = 120) -> bool:
    """Poll the study until ``ready(trials)`` holds; False if it never does within ``timeout``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if ready(optuna.load_study(study_name="msc", storage=storage).get_trials(deepcopy=False)):
                return True
        except Exception:  # noqa: BLE001 - the study is not created yet
            pass
        time.sleep(0.2)
    return False


def test_sigkill_mid_trial_then_resume_ends_with_exactly_n_trials(project, config):
    n = 5
    write_params(project, config, **{"tune.trials": n, "train.epochs": 60, "train.patience": 60})
    storage = f"sqlite:///{project / 'optuna.db'}"
    tuner = start_tuner(project)

    def mid_trial(trials) -> bool:
        # Mid-trial for sure: a running trial that has reported epochs and has 40 more to go.
        running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING
                   and t.intermediate_values and max(t.intermediate_values) < 20]
        return bool(running) and any(t.state in FINISHED for t in trials)

    killed = wait_for_trials(storage, mid_trial)
    if killed:
        tuner.send_signal(signal.SIGKILL)
    tuner.wait()
    assert killed, "the tuner never had a running trial to kill"
    resumed = start_tuner(project)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    trials = optuna.load_study(study_name="msc", storage=storage).get_trials()
    assert sum(t.state in FINISHED for t in trials) == n
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1, "the killed trial is failed through its heartbeat"
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params


POSTGRES_URL = os.environ.get("MSC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_available() -> bool:
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(POSTGRES_URL).connect():
            return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.postgres
def test_two_workers_share_one_postgres_study(project, config):
    if not postgres_available():
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    n = 8
    name = f"two-workers-{uuid.uuid4().hex[:8]}"
    write_params(project, config, **{"train.epochs": 3})
    workers = [start_tuner(project, "--trials", str(n), "--storage", POSTGRES_URL, "--study-name", name)
               for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = optuna.load_study(study_name=name, storage=POSTGRES_URL).get_trials()
    assert sum(t.state in FINISHED for t in trials) == n
    assert len({t.user_attrs["worker"] for t in trials if t.state in FINISHED}) == 2, "both workers ran trials"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("msc")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.study_name = '{name}'")
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs if "trial_number" in r.data.tags}
    assert len(parents) == 1, "every trial of both processes nests under one parent run"


def test_folds_average_the_objective_over_k_folds(project, config):
    tune(small(config, **{"tune.trials": 1, "tune.folds": 3}))
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("msc")
    (child,) = [r for r in client.search_runs([experiment.experiment_id]) if "trial_number" in r.data.tags]
    study = optuna.load_study(study_name="msc", storage=f"sqlite:///{project / 'optuna.db'}")
    assert study.best_value == pytest.approx(child.data.metrics["cv_val_weighted_f1"])
    assert study.best_value != pytest.approx(child.data.metrics["best_val_weighted_f1"])


def test_a_second_tuner_on_one_sqlite_study_is_refused_and_the_first_finishes(project, config):
    n = 3
    write_params(project, config, **{"tune.trials": n, "train.epochs": 40, "train.patience": 40})
    storage = f"sqlite:///{project / 'optuna.db'}"
    first = start_tuner(project)
    assert wait_for_trials(storage, bool), "the first tuner never started a trial"
    second = start_tuner(project)
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 2, output
    assert "another tuner is already running" in output and "postgresql://" in output and "Traceback" not in output
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output
    trials = optuna.load_study(study_name="msc", storage=storage).get_trials()
    assert sum(t.state in FINISHED for t in trials) == n and len(trials) == n
    with sqlite3.connect(project / "optuna.db") as db:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"


def test_skipped_samples_are_counted_on_the_study_run(project, config, tmp_path):
    import shutil

    from src.data import load_dataset

    data = tmp_path / "data"
    shutil.copytree(config.data.root, data)
    bad = [s.guid for s in load_dataset(data).labelled[:3]]
    for guid in bad:
        (data / "data" / f"{guid}.jpg").write_bytes(b"\xff\xd8 truncated")
    skip = small(config, **{"data.root": str(data), "data.on_error": "skip", "tune.trials": 1,
                            "features.dir": str(tmp_path / "features")})
    tune(skip)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("msc")
    (parent,) = [r for r in client.search_runs([experiment.experiment_id]) if "trial_number" not in r.data.tags]
    assert parent.data.metrics["skipped_samples"] == 3
    logged = mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/skipped_samples.json")
    assert [item["guid"] for item in logged] == bad
    assert all(f"{item['guid']}.jpg" in item["reason"] for item in logged), "the reason names the file"
