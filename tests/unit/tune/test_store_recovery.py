"""Stores after a bad day (issue 24), in one tune: a full disk is a sentence. The tests that need a
second tune (a killed registration finished, an emptied store) are in integration/test_store_recovery.py."""

import mlflow
from mlflow import MlflowClient

from msc.config import with_overrides


def store_state():
    client = MlflowClient()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    versions = [client.get_model_version("msc", v.version) for v in client.search_model_versions("name = 'msc'")]
    return client, runs, versions


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


