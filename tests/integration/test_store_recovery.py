"""Stores after a bad day (issue 24): a registration killed halfway is finished by the next tune, which
never registers the same run twice, ends the study's parent run and names stray versions; a study
whose MLflow store was emptied is a sentence; a full disk is a sentence."""

import pytest
from mlflow import MlflowClient

from msc.config import with_overrides
from msc.track import registry
from msc.tune.runner import tune
from tests.unit.tune.test_store_recovery import store_state


def test_a_registration_killed_halfway_is_finished_by_the_next_tune(trained_project, config, monkeypatch, capsys):
    config = with_overrides(config, {"tune.trials": 1, "train.epochs": 2})
    real_move_stage = registry.move_stage

    def killed(client, version):  # the version exists, with no stage and no alias yet
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "move_stage", killed)
    with pytest.raises(KeyboardInterrupt, match="parent run KILLED"):
        tune(config)
    client, runs, versions = store_state()
    assert [v.current_stage for v in versions] == ["None"] and not versions[0].aliases
    (parent,) = [r for r in runs if r.info.run_name.startswith("study-")]
    assert parent.info.status == "KILLED"  # a clean exit on a signal ends its own runs

    monkeypatch.setattr(registry, "move_stage", real_move_stage)
    summary = tune(config).summary
    client, runs, versions = store_state()
    assert len(versions) == 1, "the same run is never registered twice"
    (version,) = versions
    assert version.current_stage == "Production" and version.aliases == ["production"]
    assert version.tags["temperature"] and version.tags["holdout_weighted_f1"]
    registration = summary.registration
    assert registration.version == 1 and "was registered for this trial by a tune that was interrupted" in registration.gate
    assert [r.info.run_name for r in runs if r.info.status != "FINISHED"] == []

    # A stray version (no stage, no alias) is named on stderr by the next tune.
    stray = client.create_model_version("msc", source=str(trained_project / "elsewhere"))  # of no run: not the candidate's
    capsys.readouterr()
    tune(config)
    assert f"msc version {stray.version} has no stage and no alias" in capsys.readouterr().err


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
