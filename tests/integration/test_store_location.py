"""A copied or moved project must not use another folder's runs (issue 23, item 4)."""

import shutil

import mlflow
import pytest

from msc.core.errors import UserError
from msc.track.store import setup_mlflow

# Integration (the folder): each test creates MLflow's schema, about 10 s each on 2 cores.


@pytest.fixture()
def original(tmp_path, monkeypatch):
    """A project folder whose local store has the experiment (its artifact root is absolute)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    setup_mlflow()
    mlflow.set_tracking_uri("")  # let the next setup_mlflow choose again
    return root


@pytest.mark.parametrize("how", ["copy", "move"])
def test_a_copied_or_moved_store_stops_with_both_folders(original, tmp_path, monkeypatch, how):
    other = tmp_path / f"{how}-of-project"
    (shutil.copytree if how == "copy" else shutil.move)(original, other)
    monkeypatch.chdir(other)
    with pytest.raises(UserError) as raised:
        setup_mlflow()
    message = str(raised.value)
    assert f"keeps its artifacts in {original / 'mlruns'}, outside this project ({other})" in message
    assert "delete mlflow.db and mlruns/ here" in message and "\n" not in message


def test_a_dvc_temporary_experiment_uses_the_project_store(original, monkeypatch):
    """The reason the paths are absolute: .dvc/tmp/exps/<copy> writes into the project's own store."""
    temp = original / ".dvc" / "tmp" / "exps" / "tmp123"
    temp.mkdir(parents=True)
    monkeypatch.chdir(temp)
    assert setup_mlflow() == mlflow.get_experiment_by_name("msc").experiment_id
    assert mlflow.get_experiment_by_name("msc").artifact_location == (original / "mlruns").as_uri()
