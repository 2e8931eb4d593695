"""Stores after a bad day (issue 24): a registration killed halfway is finished by the next tune, which
never registers the same run twice, ends the study's parent run and names stray versions; a study
whose MLflow store was emptied is a sentence; a full disk is a sentence."""

import mlflow
import pytest
from mlflow import MlflowClient

from msc.config import with_overrides
from msc.track import registry
from msc.tune.runner import tune


def store_state():
    client = MlflowClient()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    versions = [client.get_model_version("msc", v.version) for v in client.search_model_versions("name = 'msc'")]
    return client, runs, versions


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




def test_a_full_disk_during_tune_is_one_sentence_and_the_parent_run_ends(trained_project, config, monkeypatch, capsys):
    import errno

    import yaml

    from msc.tune import objective
    from src import tune as tune_stage

    def full(*args, **kwargs):
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(trained_project / "mlruns"))
        except OSError as cause:  # as MLflow reports it: its own error, raised from the OSError
            raise AssertionError("Should not reach.") from cause

    monkeypatch.setattr(objective, "log_trial_model", full)
    params = trained_project / "params.yaml"
    params.write_text(yaml.safe_dump(__import__("dataclasses").asdict(with_overrides(
        config, {"tune.trials": 1, "train.epochs": 1}))))
    assert tune_stage.main(["--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "mlruns" in err and "Should not reach" not in err
    assert "Traceback" not in err and err.count("\n") == 1  # the sentence alone
    _, runs, _ = store_state()
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []


