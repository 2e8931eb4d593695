"""Rollbacks are respected (issue 30, item 7): after alias ``production`` was moved by hand from the
version msc promoted last to an older one, a plain tune keeps that version's run out and says so;
``--force`` registers it again; another run is compared as usual."""

import json
from dataclasses import asdict

import mlflow
import yaml

from msc.config import with_overrides
from msc.tune.runner import tune


def test_a_plain_tune_after_a_rollback_does_not_promote_the_version_rolled_back_from(trained_project, config, capsys):
    from src import tune as tune_command

    small = with_overrides(config, {"tune.trials": 1, "train.epochs": 2, "register.calibration_folds": 0})
    # Version 1 barely trains (a learning rate near 0), so version 2 beats it on the holdout: before this
    # fix, a plain tune after the rollback compared the two again and promoted version 2's run as version 3.
    weak = with_overrides(small, {"tune.search_space": {**small.tune.search_space,
                                                        "train.lr": {"type": "float", "low": 1e-7, "high": 2e-7}}})
    tune(weak)
    second = with_overrides(small, {"tune.study_name": "second"})
    promoted = tune(second).summary.registration
    assert promoted.promoted_now and promoted.compared_with_version == 1 and promoted.version == 2
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("msc", "production", "1")  # the rollback, by hand (README)
    client.transition_model_version_stage("msc", "1", "Production")
    client.transition_model_version_stage("msc", "2", "Archived")
    params = trained_project / "params.yaml"
    params.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(second)))))
    capsys.readouterr()
    assert tune_command.main(["--params", str(params)]) == 0  # nothing changed: the study is complete
    out = capsys.readouterr().out
    assert "msc version 2, which was rolled back from" in out and "Production stays msc version 1" in out
    assert sorted(int(v.version) for v in client.search_model_versions("name='msc'")) == [1, 2]
    assert str(client.get_model_version_by_alias("msc", "production").version) == "1"
    written = json.loads((trained_project / "results" / "metrics.json").read_text())
    assert written["version"] == 1 and not written["promoted_now"] and "version 2" in written["gate"]
    # Another run (version 1's configuration in another study: the same scores) is compared as usual.
    third = tune(with_overrides(weak, {"tune.study_name": "third"})).summary.registration
    assert third.compared_with_version == 1 and "rolled back" not in third.gate and not third.promoted_now
    # --force registers the rolled-back run again, as a new version.
    assert tune_command.main(["--params", str(params), "--force"]) == 0
    production = client.get_model_version_by_alias("msc", "production")
    assert production.tags["mlflow_run_id"] == client.get_model_version("msc", "2").tags["mlflow_run_id"]
    assert int(production.version) == 3 and "Production is now msc version 3" in capsys.readouterr().out
