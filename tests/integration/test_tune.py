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

from msc.config import with_overrides
from msc.core.errors import UserError
from msc.data.posts import DataSource
from msc.data.split import write_splits
from msc.features.build import featurize
from msc.tune.runner import tune
from msc.tune.study import FINISHED
from msc.tune.summary import write_results
from tests.helpers import POSTGRES_URL, REPO, cache_sections, postgres_available

TRIALS = 4


def small(config, **extra):
    return with_overrides(config, {"tune.trials": TRIALS, "train.epochs": 3, **extra})


def test_every_trial_is_a_child_run_with_metrics_confusion_and_model(trained_project, config):
    outcome = tune(small(config))
    summary, written = outcome.summary, write_results(trained_project / "results", outcome)  # what src.tune writes
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("msc")
    assert experiment.artifact_location == (trained_project / "mlruns").as_uri()
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development", "the UI opens on the runs"
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "study_name" in r.data.tags and "trial_number" not in r.data.tags]
    children = [r for r in runs if "trial_number" in r.data.tags]
    assert len(parents) == 1 and len(children) == TRIALS
    parent = parents[0]
    assert parent.data.tags["study_name"] == summary.study_name == f"msc-{summary.study_identity}"
    assert parent.data.tags["study_identity"] == summary.study_identity and "best_val_weighted_f1" in parent.data.metrics
    assert parent.data.tags["feature_fingerprint"] == summary.feature_fingerprint
    parent_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"optimization_history.png", "best_trial.json", "holdout_metrics.json", "study_identity.json"} <= parent_artifacts
    identity = mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/study_identity.json")
    assert identity["split_identity"] == summary.split_identity and identity["train"]["epochs"] == 3
    models = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
    runs_with_models = {m.source_run_id for m in models}
    study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{trained_project / 'optuna.db'}")
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["fusion"] in {"late", "early", "cross_attention", "gated"}
        assert child.data.params["train.fusion"] == child.data.tags["fusion"]
        assert set(child.data.params) == set(children[0].data.params), "same param names in every run"
        # A pruned trial is a normal outcome: FINISHED, told apart by its tag, never FAILED.
        assert child.info.status == "FINISHED" and child.data.tags["optuna_state"] in {"COMPLETE", "PRUNED"}
        history = client.get_metric_history(child.info.run_id, "epoch_val_weighted_f1")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        if child.data.tags["optuna_state"] == "COMPLETE":
            # The plain name is the kept epoch, the trial's objective, not the last epoch.
            trial = study.trials[int(child.data.tags["trial_number"])]
            assert child.data.metrics["val_weighted_f1"] == pytest.approx(trial.value)
            assert child.data.metrics["objective"] == pytest.approx(trial.value)
            kept = int(child.data.metrics["best_epoch"])
            assert history[kept - 1].value == pytest.approx(trial.value) == max(m.value for m in history)
            assert any("confusion" in a.path and a.path.endswith(".png") for a in client.list_artifacts(child.info.run_id))
            assert child.info.run_id in runs_with_models
    metrics = json.loads(written.read_text())
    assert metrics["version"] == summary.registration.version == 1 and metrics["promoted_now"]
    assert set(metrics["holdout"]) >= {"accuracy", "weighted_f1", "macro_f1", "f1_neutral"}
    version = client.get_model_version_by_alias("msc", "production")
    assert version.current_stage == "Production"
    assert float(version.tags["holdout_weighted_f1"]) == pytest.approx(metrics["holdout"]["weighted_f1"], abs=1e-6)
    assert version.tags["feature_fingerprint"] == metrics["feature_fingerprint"]
    assert version.tags["split_identity"] == metrics["split_identity"]

    # The same config resumes its own study: no new trial, and the registry says nothing changed.
    # The parent run is left as it was: its duration does not grow by the time between commands.
    ended = client.get_run(parent.info.run_id).info.end_time
    assert ended is not None and client.get_run(parent.info.run_id).data.metrics["trials_seconds"] > 0
    time.sleep(1.1)
    again = tune(small(config)).summary
    assert client.get_run(parent.info.run_id).info.end_time == ended
    assert again.study_name == summary.study_name and not again.registration.promoted_now
    assert "nothing changed" in again.registration.gate and again.registration.version == 1
    assert len([r for r in client.search_runs([experiment.experiment_id]) if "trial_number" in r.data.tags]) == TRIALS


def test_predict_from_the_registry_and_promotion_rule(trained_project, config):
    from src import predict

    tune(small(config))
    out = trained_project / "results" / "test_with_label.txt"
    params = trained_project / "params.yaml"
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
    local = mlflow.artifacts.download_artifacts("models:/msc@production", dst_path=str(trained_project / "exported"))
    for uri in (f"runs:/{run_id}/model", local):
        out.unlink()
        assert predict.main(["--model-uri", uri, "--params", str(params)]) == 0, uri
        assert len(out.read_text().splitlines()) == len(test_lines)
    # A second study under another name: registered only if better on the holdout, or forced.
    summary = tune(small(config, **{"tune.study_name": "second", "tune.trials": 1})).summary
    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name='msc'")
    assert len(versions) == (2 if summary.registration.promoted_now else 1)
    forced = tune(small(config, **{"tune.study_name": "second", "tune.trials": 1}), force=True).summary
    assert forced.registration.promoted_now
    stages = {str(v.version): v.current_stage for v in client.search_model_versions("name='msc'")}
    assert stages[str(forced.registration.version)] == "Production"
    assert sum(stage == "Production" for stage in stages.values()) == 1


def test_unknown_model_uri_lists_registered_models(trained_project, config, capsys):
    from src import predict

    tune(small(config, **{"tune.trials": 1}))
    params = trained_project / "params.yaml"
    params.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(config)))))
    assert predict.main(["--model-uri", "models:/nope/Production", "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert "cannot load model 'models:/nope/Production'" in err and "msc (versions 1; production -> 1)" in err
    assert not (trained_project / "results" / "test_with_label.txt").exists()


def write_params(project, config, **extra):
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(with_overrides(config, extra))))))
    return path


STARTED_TUNERS: list[subprocess.Popen] = []  # killed after their test (no_tuner_outlives_its_test)


def start_tuner(project, *args):
    tuner = subprocess.Popen([sys.executable, "-m", "src.tune", *args], cwd=project,
                             env={**os.environ, "PYTHONPATH": str(REPO)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    STARTED_TUNERS.append(tuner)
    return tuner


@pytest.fixture(autouse=True)
def no_tuner_outlives_its_test():
    """A test that fails while its tuner runs (a communicate() timeout on a loaded machine) would leave the tuner
    training on for minutes, slowing every later test; test files that import start_tuner import this too."""
    yield
    while STARTED_TUNERS:
        tuner = STARTED_TUNERS.pop()
        if tuner.poll() is None:
            tuner.kill()
        tuner.communicate()


def only_study(storage: str) -> optuna.Study:
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def wait_for_trials(storage: str, ready, timeout: float = 120) -> bool:
    """Poll the storage's one study until ``ready(trials)`` holds; False if it never does within ``timeout``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if ready(only_study(storage).get_trials(deepcopy=False)):
                return True
        except Exception:  # noqa: BLE001 - the study is not created yet
            pass
        time.sleep(0.2)
    return False


def test_sigkill_mid_trial_then_resume_ends_with_exactly_n_trials(trained_project, config):
    n = 3
    write_params(trained_project, config, **{"tune.trials": n, "train.epochs": 40, "train.patience": 40})
    storage = f"sqlite:///{trained_project / 'optuna.db'}"
    tuner = start_tuner(trained_project)

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
    resumed = start_tuner(trained_project)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    trials = only_study(storage).get_trials()
    assert sum(t.state in FINISHED for t in trials) == n
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1, "the killed trial is failed through its heartbeat"
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params
    # No run is left RUNNING: the killed trial's run is FAILED, with a note naming its retry.
    mlflow.set_tracking_uri(f"sqlite:///{trained_project / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    (killed_run,) = [r for r in runs if r.data.tags.get("trial_number") == str(failed[0].number)]
    assert killed_run.info.status == "FAILED"
    assert f"retried it as trial {retried[0].number}" in killed_run.data.tags["mlflow.note.content"]
    assert "closed the MLflow trial run trial-" in output


@pytest.mark.postgres
def test_two_workers_share_one_postgres_study(trained_project, config):
    if not postgres_available():
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    n = 8
    name = f"two-workers-{uuid.uuid4().hex[:8]}"
    write_params(trained_project, config, **{"train.epochs": 3})
    workers = [start_tuner(trained_project, "--trials", str(n), "--storage", POSTGRES_URL, "--study-name", name)
               for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = optuna.load_study(study_name=name, storage=POSTGRES_URL).get_trials()
    assert sum(t.state in FINISHED for t in trials) == n
    # Each tuner claims a slot before Optuna creates a trial: no surplus trial, so none failed.
    assert len(trials) == n and [t for t in trials if t.state == optuna.trial.TrialState.FAIL] == []
    assert len({t.user_attrs["worker"] for t in trials if t.state in FINISHED}) == 2, "both workers ran trials"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{trained_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("msc")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.study_name = '{name}'")
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs if "trial_number" in r.data.tags}
    assert len(parents) == 1, "every trial of both processes nests under one parent run"


def test_folds_average_the_objective_over_k_folds(trained_project, config):
    summary = tune(small(config, **{"tune.trials": 1, "tune.folds": 3})).summary
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("msc")
    (child,) = [r for r in client.search_runs([experiment.experiment_id]) if "trial_number" in r.data.tags]
    study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{trained_project / 'optuna.db'}")
    assert study.best_value == pytest.approx(child.data.metrics["cv_val_weighted_f1"])
    assert study.best_value != pytest.approx(child.data.metrics["val_weighted_f1"])


def test_a_second_tuner_on_one_sqlite_study_is_refused_and_the_first_finishes(trained_project, config):
    n = 2
    write_params(trained_project, config, **{"tune.trials": n, "train.epochs": 30, "train.patience": 30})
    storage = f"sqlite:///{trained_project / 'optuna.db'}"
    first = start_tuner(trained_project)
    assert wait_for_trials(storage, bool), "the first tuner never started a trial"
    second = start_tuner(trained_project)
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 2, output
    assert "another tuner is already running" in output and "postgresql://" in output and "Traceback" not in output
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output
    trials = only_study(storage).get_trials()
    assert sum(t.state in FINISHED for t in trials) == n and len(trials) == n
    with sqlite3.connect(trained_project / "optuna.db") as db:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"


def test_skipped_samples_are_counted_on_the_study_run(trained_project, config, tmp_path):
    import shutil

    from msc.data.dataset import load_dataset

    data = tmp_path / "data"
    shutil.copytree(config.data.root, data)
    bad = [s.guid for s in load_dataset(DataSource(data)).labelled[:3]]
    for guid in bad:
        (data / "data" / f"{guid}.jpg").write_bytes(b"\xff\xd8 truncated")
    skip = small(config, **{"data.root": str(data), "data.on_error": "skip", "tune.trials": 1,
                            "features.dir": str(tmp_path / "features"), "data.splits_dir": str(tmp_path / "splits")})
    featurize(*cache_sections(skip))
    write_splits(skip.data.source, skip.data.splits_dir, skip.data.split_rule)
    tune(skip)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("msc")
    (parent,) = [r for r in client.search_runs([experiment.experiment_id]) if "trial_number" not in r.data.tags]
    assert parent.data.metrics["skipped_samples"] == 3
    logged = mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/skipped_samples.json")
    assert [item["guid"] for item in logged] == bad
    assert all(f"{item['guid']}.jpg" in item["reason"] for item in logged), "the reason names the file"


def registered_head(version) -> dict:
    return mlflow.artifacts.load_dict(f"models:/msc/{version}/artifacts/head.json")


def test_a_changed_backbone_runs_new_trials_and_registers_a_head_trained_for_it(trained_project, config, tmp_path):
    """Regression: the study name was fixed, so a changed backbone ran 0 trials and scored the old
    study's head on the new features."""
    from msc.model.tiny import write_backbone

    first = tune(small(config, **{"tune.trials": 2})).summary
    other_clip = tmp_path / "other-clip"
    write_backbone(other_clip, "tiny", seed=1)
    changed = small(config, **{"tune.trials": 2, "model.backbone": str(other_clip),
                               "features.dir": str(tmp_path / "features-other")})
    cache, built = featurize(*cache_sections(changed))
    assert built
    with pytest.raises(UserError, match="feature cache .* is stale: model.backbone changed"):
        tune(small(config, **{"tune.trials": 2, "model.backbone": str(other_clip)}))
    second = tune(changed).summary
    assert second.study_name != first.study_name and second.feature_fingerprint == cache.fingerprint
    study = optuna.load_study(study_name=second.study_name, storage=f"sqlite:///{trained_project / 'optuna.db'}")
    assert sum(t.state in FINISHED for t in study.trials) == 2, "the new config ran its own trials"
    registration = second.registration
    assert registration.promoted_now and registration.version == 2 and "another feature cache" in registration.gate
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("msc", "production")
    assert int(version.version) == 2 and version.tags["feature_fingerprint"] == cache.fingerprint
    assert registered_head(2)["backbone"] == str(other_clip.resolve())


def test_a_changed_split_seed_never_compares_two_models_on_different_splits(trained_project, config, tmp_path, monkeypatch):
    """Regression: after data.split_seed changed, most of the new holdout had been the old model's
    training rows, and the gate compared the two there."""
    from msc.tune import registration as registry

    first = tune(small(config, **{"tune.trials": 2})).summary
    resplit = small(config, **{"tune.trials": 2, "data.split_seed": 7, "data.splits_dir": str(tmp_path / "splits-7")})
    write_splits(resplit.data.source, resplit.data.splits_dir, resplit.data.split_rule)
    scored = []
    real = registry.logged_head
    monkeypatch.setattr(registry, "logged_head", lambda uri: scored.append(uri) or real(uri))
    second = tune(resplit).summary
    assert second.split_identity != first.split_identity
    registration = second.registration
    assert registration.promoted_now and registration.compared_with_version is None and "another split" in registration.gate
    assert not [uri for uri in scored if uri.startswith("models:/msc/")], "Production was never scored on this split"
    version = mlflow.MlflowClient().get_model_version_by_alias("msc", "production")
    assert int(version.version) == 2 and version.tags["split_identity"] == second.split_identity
    # The same split again: compared with Production on the holdout they share.
    third = tune(small(resplit, **{"tune.study_name": "third", "tune.trials": 1})).summary
    assert third.registration.compared_with_version == 2 and "on the same" in third.registration.gate


def test_a_production_model_that_cannot_load_is_an_error_not_a_replacement(trained_project, config):
    tune(small(config, **{"tune.trials": 1}))
    for weights in Path(trained_project, "mlruns").rglob("head.safetensors"):
        weights.write_bytes(b"broken")  # version 1's stored head
    with pytest.raises(UserError, match="cannot load the Production model msc version 1 .*--force"):
        tune(small(config, **{"tune.trials": 1, "tune.study_name": "next"}))
    client = mlflow.MlflowClient()
    assert [int(v.version) for v in client.search_model_versions("name='msc'")] == [1]
    forced = tune(small(config, **{"tune.trials": 1, "tune.study_name": "next"}), force=True).summary
    assert forced.registration.promoted_now and forced.registration.version == 2


def test_an_explicit_study_name_is_kept_and_refused_for_another_experiment(trained_project, config):
    shared = tune(small(config, **{"tune.trials": 1, "tune.study_name": "shared"})).summary
    assert shared.study_name == "shared"
    with pytest.raises(UserError, match="study 'shared' .* belongs to another experiment .*differs in train.*msc-"):
        tune(small(config, **{"tune.trials": 1, "tune.study_name": "shared", "train.epochs": 2}))


def test_trial_models_reference_the_backbone_and_only_the_registered_version_bundles_it(trained_project, config, tiny_clip,
                                                                                         sample_root):
    import shutil

    import pandas as pd

    copy = trained_project / "clip-copy"
    shutil.copytree(tiny_clip, copy)  # same content, so the feature cache stays fresh
    # The cache records the backbone's name; a cache of its own for the copy.
    bundled = small(config, **{"tune.trials": 2, "register.bundle_backbone": True, "model.backbone": str(copy),
                               "features.dir": str(trained_project / "features")})
    featurize(*cache_sections(bundled))
    tune(bundled)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("msc")
    for child in [r for r in client.search_runs([experiment.experiment_id]) if "trial_number" in r.data.tags]:
        files = {a.path for a in client.list_artifacts(child.info.run_id, "model/artifacts")}
        assert files == {"model/artifacts/head.safetensors", "model/artifacts/head.json",
                         "model/artifacts/digests.json"}, files
    registered = mlflow.artifacts.download_artifacts("models:/msc@production", dst_path=str(trained_project / "registered"))
    assert (Path(registered) / "artifacts" / copy.name / "model.safetensors").is_file(), "the backbone is bundled"
    shutil.rmtree(copy)
    model = mlflow.pyfunc.load_model("models:/msc@production", model_config={"trusted_input": True})
    out = model.predict(pd.DataFrame({"text": ["love it"], "image": [str(sample_root / "data" / "1.jpg")]}))
    assert out["label"].iloc[0] in {"positive", "neutral", "negative"}




def test_without_a_terminal_every_finished_trial_prints_one_line(trained_project, config, capsys):
    import io

    from rich.console import Console

    tune(small(config, **{"tune.trials": 3}), console=Console(file=io.StringIO(), force_terminal=False))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trial ")]
    assert len(lines) == 3, lines
    assert all(("complete" in line or "pruned" in line) and "lr=" in line and "fusion=" in line for line in lines)
    assert lines[-1].endswith("3 finished in study " + lines[-1].rsplit(" ", 1)[-1])


def test_parallel_trials_in_one_process_keep_their_own_runs(trained_project, config):
    summary = tune(small(config, **{"tune.trials": 4, "tune.n_jobs": 2})).summary
    study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{trained_project / 'optuna.db'}")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("msc")
    children = [r for r in client.search_runs([experiment.experiment_id]) if "trial_number" in r.data.tags]
    assert sorted(int(r.data.tags["trial_number"]) for r in children) == [0, 1, 2, 3]
    assert len({r.data.tags["mlflow.parentRunId"] for r in children}) == 1
    for run in children:
        trial = study.trials[int(run.data.tags["trial_number"])]
        # Each thread logged to its own run: the trial's own parameters, its own run id.
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id and run.info.run_name == f"trial-{trial.number}"
        assert {k: run.data.params[k] for k in trial.params} == {k: str(v) for k, v in trial.params.items()}
