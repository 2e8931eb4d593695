"""Stores after a bad day (issue 24): a registration killed halfway is finished by the next tune, which
never registers the same run twice, ends the study's parent run and names stray versions; a study
whose MLflow store was emptied is a sentence; a full disk is a sentence."""

import pytest
from mlflow import MlflowClient

from msc.config import with_overrides
from msc.tune.runner import tune
from tests.unit.tune.test_store_recovery import store_state


def test_a_study_whose_mlflow_store_was_emptied_is_a_sentence_with_two_ways_forward(trained_project, config):
    import shutil

    from msc.core.errors import UserError
    from msc.track.store import setup_mlflow

    config = with_overrides(config, {"tune.trials": 1, "train.epochs": 1})
    tune(config)
    (trained_project / "mlflow.db").unlink()  # optuna.db is kept
    shutil.rmtree(trained_project / "mlruns")
    setup_mlflow()
    with pytest.raises(UserError, match=r"has its MLflow parent run \w+, and the tracking store .* has no such run.*"
                                        r"MLFLOW_TRACKING_URI.*--study-name NEW.*optuna delete-study"):
        tune(config)


def test_an_archived_version_of_the_same_run_goes_through_the_gate_again(trained_project, config):
    """Only a version left with no stage and no alias is finished as interrupted; one archived since
    (or rolled back from) is history, and the gate decides about the candidate as usual."""
    config = with_overrides(config, {"tune.trials": 1, "train.epochs": 1})
    tune(config)
    client = MlflowClient()
    client.transition_model_version_stage("msc", "1", "Archived")
    client.delete_registered_model_alias("msc", "production")
    summary = tune(config).summary
    assert "interrupted" not in summary.registration.gate and "no msc version is in Production yet" in summary.registration.gate
    _, _, versions = store_state()
    assert [(str(v.version), v.current_stage) for v in sorted(versions, key=lambda v: int(v.version))] == [
        ("1", "Archived"), ("2", "Production")]
