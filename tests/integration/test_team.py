"""Three machines, played by three clones in three folders, share nothing but servers on loopback:
an `mlflow server` (PostgreSQL backend store, proxied artifacts), one Optuna study on PostgreSQL,
and a DVC remote (a local folder standing in for S3 or SSH)."""

import base64
import contextlib
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml

from benchmarks.processes import free_port, running_server, serve_model
from tests.helpers import GIT_USER, POSTGRES_URL, postgres_available, sh, snapshot_repository

pytestmark = pytest.mark.postgres

TRIALS = 10
TEAM_PARAMS = {"model.backbone": "models/tiny-clip", "tune.trials": TRIALS, "train.epochs": 3,
               "features.augment_views": 1, "features.num_workers": 0,
               # The registered version carries the sample backbone, so clone C needs no local copy.
               "register.bundle_backbone": True}


@contextlib.contextmanager
def database(name: str):
    """A database of its own on the test server, dropped afterwards; yields its URL."""
    import psycopg

    admin = POSTGRES_URL.replace("+psycopg", "")  # psycopg takes a plain libpq URL
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'create database "{name}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'drop database if exists "{name}" with (force)')


def set_params(params_file: Path, overrides: dict) -> None:
    params = yaml.safe_load(params_file.read_text())
    for key, value in overrides.items():
        section, name = key.split(".")
        params[section][name] = value
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture()
def servers(tmp_path):
    """The lab's shared services: a tracking server on PostgreSQL with proxied artifacts, and an
    Optuna database. Two databases: MLflow and Optuna both keep an `alembic_version` table."""
    if not postgres_available():
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    tag = uuid.uuid4().hex[:8]
    with database(f"msc_mlflow_{tag}") as mlflow_db, database(f"msc_optuna_{tag}") as optuna_db:
        port = free_port()
        server = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", mlflow_db,
                  "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1",
                  "--port", str(port), "--workers", "1"]
        with running_server(server, tmp_path, dict(os.environ), f"http://127.0.0.1:{port}/health"):
            yield f"http://127.0.0.1:{port}", optuna_db


def git_clone(origin: Path, folder: Path) -> Path:
    sh("git", "clone", "-q", str(origin), str(folder), cwd=origin.parent)
    return folder


@pytest.mark.timeout(1200)
def test_three_machines_share_a_tracking_server_a_study_and_a_dvc_remote(tmp_path, servers):
    tracking, optuna_db = servers
    on_server = {"MLFLOW_TRACKING_URI": tracking}
    # The project as the lab has it: committed params and the DVC remote in .dvc/config.
    work = snapshot_repository(tmp_path / "work")
    set_params(work / "params.yaml", TEAM_PARAMS)
    sh("dvc", "remote", "add", "-d", "shared", str(tmp_path / "dvc-remote"), cwd=work)
    sh("git", *GIT_USER, "commit", "-qam", "lab settings", cwd=work)
    origin = tmp_path / "origin.git"
    sh("git", "clone", "-q", "--bare", str(work), str(origin), cwd=tmp_path)

    # Machine A computes the split and the feature cache once, and shares them.
    a = git_clone(origin, tmp_path / "a")
    sh(sys.executable, "-m", "src.sample", cwd=a)
    sh("dvc", "repro", "split", "featurize", cwd=a)
    sh("dvc", "push", cwd=a)
    sh("git", *GIT_USER, "add", "dvc.lock", cwd=a)
    sh("git", *GIT_USER, "commit", "-qm", "feature cache", cwd=a)
    sh("git", "push", "-q", "origin", "HEAD", cwd=a)

    # Machine B pulls them and never recomputes: its stages are up to date after the pull.
    b = git_clone(origin, tmp_path / "b")
    sh("dvc", "pull", cwd=b)
    assert "up to date" in sh("dvc", "status", "split", "featurize", cwd=b).stdout
    manifest = json.loads((b / "features" / "manifest.json").read_text())
    assert manifest["fingerprint"] == json.loads((a / "features" / "manifest.json").read_text())["fingerprint"]
    sh(sys.executable, "-m", "src.sample", "--no-data", cwd=b)  # the sample backbone, for bundling

    # A and B tune one study together, through the tracking server.
    study = f"lab-{uuid.uuid4().hex[:6]}"
    tune = [sys.executable, "-m", "src.tune", "--trials", str(TRIALS), "--storage", optuna_db, "--study-name", study]
    env = {**os.environ, "PYTHONPATH": "", **on_server}
    tuners = [subprocess.Popen(tune, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for folder in (a, b)]
    outputs = [tuner.communicate(timeout=900)[0] for tuner in tuners]
    assert [tuner.returncode for tuner in tuners] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    finished = [t for t in optuna.load_study(study_name=study, storage=optuna_db).get_trials()
                if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) == TRIALS
    assert len({t.user_attrs["worker"] for t in finished}) == 2, "both machines ran trials"

    client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    experiment = client.get_experiment_by_name("msc")
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), "artifacts go through the server"
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.study_name = '{study}'")
    parents = [r for r in runs if "trial_number" not in r.data.tags]
    children = [r for r in runs if "trial_number" in r.data.tags]
    assert len(parents) == 1 and len(children) == TRIALS
    models = {m.source_run_id for m in client.search_logged_models(experiment_ids=[experiment.experiment_id])}
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert client.get_metric_history(child.info.run_id, "epoch_val_weighted_f1"), "per-epoch curves"
        if child.data.tags["optuna_state"] == "COMPLETE":
            assert any("confusion" in a.path for a in client.list_artifacts(child.info.run_id))
            assert child.info.run_id in models
    for folder in (a, b):
        assert not (folder / "mlflow.db").exists() and not (folder / "mlruns").exists(), "nothing tracked locally"

    # Both tuners finished at once: exactly one version was registered, the study's best.
    versions = client.search_model_versions("name = 'msc'")
    assert len(versions) == 1, [(v.version, v.tags.get("mlflow_run_id")) for v in versions]
    best = optuna.load_study(study_name=study, storage=optuna_db).best_trial
    production = client.get_model_version_by_alias("msc", "production")
    assert production.current_stage == "Production"
    assert production.tags["mlflow_run_id"] == best.user_attrs["mlflow_run_id"]
    assert sum("nothing changed" in output for output in outputs) == 1, outputs
    # A logged head names its backbone as params.yaml does, not by one machine's absolute path.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking)  # a models:/ URI resolves through the global tracking URI
    try:
        model = Path(mlflow.artifacts.download_artifacts(best.user_attrs["model_uri"],
                                                         dst_path=str(tmp_path / "trial-model")))
    finally:
        mlflow.set_tracking_uri(previous)
    assert json.loads((model / "artifacts" / "head.json").read_text())["backbone"] == "models/tiny-clip"

    # Machine C has no features and no MLflow store: it labels the test set through the server,
    # and serves the registered model.
    c = git_clone(origin, tmp_path / "c")
    sh("dvc", "pull", "data.dvc", cwd=c)
    assert not (c / "features").exists() and not (c / "models").exists()
    sh(sys.executable, "-m", "src.predict", "--model-uri", "models:/msc/Production", cwd=c, env=on_server)
    lines = (c / "results" / "test_with_label.txt").read_text().splitlines()
    test_guids = [line.split(",")[0] for line in (c / "data" / "test_without_label.txt").read_text().splitlines()]
    assert [line.split(",")[0] for line in lines] == test_guids
    assert {line.split(",")[1] for line in lines[1:]} <= {"positive", "neutral", "negative"}
    assert not (c / "mlflow.db").exists() and not (c / "mlruns").exists()

    port = free_port()
    guid = test_guids[1]
    image = base64.b64encode((c / "data" / "data" / f"{guid}.jpg").read_bytes()).decode()
    body = json.dumps({"dataframe_split": {"columns": ["text", "image"], "data": [["so happy today", image]]}})
    with serve_model("models:/msc/Production", c, {**env, "PYTHONPATH": ""}, port):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
    assert answer["predictions"][0]["label"] in {"positive", "neutral", "negative"}
