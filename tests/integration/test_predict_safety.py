"""Prediction is safe to kill and loads nothing but the model it is told to, without unpickling."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import cloudpickle
import mlflow
import torch
import yaml

from msc.config import with_overrides
from msc.model.integrity import DIGEST_TAG, DIGESTS, sha256_of
from msc.tune.runner import tune
from src import predict
from tests.helpers import REPO


def registered(project, config) -> Path:
    """Tune one trial (registering version 1) and write the project's params.yaml."""
    tune(with_overrides(config, {"tune.trials": 1, "train.epochs": 2}))
    params = project / "params.yaml"
    params.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(config)))))
    return params


def test_sigkill_during_predict_leaves_the_previous_output_whole(trained_project, config, tmp_path):
    params = registered(trained_project, config)
    data = tmp_path / "data"
    shutil.copytree(config.data.root, data)
    test_lines = (data / "test_without_label.txt").read_text().splitlines()
    first_test = test_lines[1].split(",")[0]
    (data / "data" / f"{first_test}.jpg").unlink()  # predict warns about it right before predicting
    out = trained_project / "results" / "test_with_label.txt"
    out.parent.mkdir(exist_ok=True)
    previous = "guid,tag\nprevious,run\n"
    out.write_text(previous)
    process = subprocess.Popen(
        [sys.executable, "-m", "src.predict", "--model-uri", "models:/msc@production", "--params", str(params),
         "--data-root", str(data)],
        cwd=trained_project, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if f"post {first_test} has no" in line:  # the model is loaded; prediction starts now
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert out.read_text() == previous, "killed before its atomic write: the old output is untouched"
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_only_the_named_model_is_loaded_and_nothing_is_unpickled(trained_project, config, monkeypatch):
    params = registered(trained_project, config)
    loaded = []
    real_load = mlflow.pyfunc.load_model
    monkeypatch.setattr(mlflow.pyfunc, "load_model", lambda uri, *a, **k: loaded.append(uri) or real_load(uri, *a, **k))

    def forbidden(*args, **kwargs):
        raise AssertionError("something was unpickled while loading or running the model")

    for module, name in ((pickle, "load"), (pickle, "loads"), (cloudpickle, "load"), (cloudpickle, "loads"),
                         (torch, "load")):
        monkeypatch.setattr(module, name, forbidden)
    assert predict.main(["--model-uri", "models:/msc@production", "--params", str(params)]) == 0
    # One load, of the local copy whose files were checked against the version the alias names
    # (msc/track/integrity.py: MLflow runs nothing of a model before that check).
    (folder,) = loaded
    version = mlflow.MlflowClient().get_model_version_by_alias("msc", "production")
    assert sha256_of(Path(folder) / DIGESTS) == version.tags[DIGEST_TAG]
    assert len((trained_project / "results" / "test_with_label.txt").read_text().splitlines()) > 1
