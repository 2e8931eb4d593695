"""Rollbacks are respected (issue 30, item 7): after alias ``production`` was moved by hand from the
version msc promoted last to an older one, a plain tune keeps that version's run out and says so;
``--force`` registers it again; another run is compared as usual."""

import json
from dataclasses import asdict
from types import SimpleNamespace

import mlflow
import pytest
import yaml

from msc.config import with_overrides
from msc.track.registry import PROMOTED_AT, Candidate, gate, rolled_back_from
from msc.tune.runner import tune


def version(number: int, run: str, promoted_at: int | None = None):
    tags = {"mlflow_run_id": run, "feature_fingerprint": "f", "split_identity": "s"}
    return SimpleNamespace(version=str(number), tags=tags | ({PROMOTED_AT: str(promoted_at)} if promoted_at else {}))


class Registry:
    def __init__(self, *versions):
        self.versions = list(versions)

    def search_model_versions(self, _filter):
        return self.versions


def candidate(run: str) -> Candidate:
    return Candidate(f"models:/m-{run}", run, {})


def test_the_version_rolled_back_from_is_the_last_msc_promotion_newer_than_the_alias():
    v1, v2, v3 = version(1, "a", 100), version(2, "b", 200), version(3, "c")  # 3: registered, never promoted
    assert rolled_back_from(Registry(v1, v2, v3), v1) is v2
    assert rolled_back_from(Registry(v1, v2, v3), v2) is None, "the alias is where msc put it"
    assert rolled_back_from(Registry(v1, v2, v3), v3) is None, "moved by hand to a newer version: no rollback"
    # msc promoted 1 again after 2 (a resumed registration): the last promotion holds the alias.
    assert rolled_back_from(Registry(version(1, "a", 300), v2), version(1, "a", 300)) is None
    assert rolled_back_from(Registry(v1), None) is None


def test_the_gate_keeps_the_rolled_back_run_out_unless_forced():
    v1, v2 = version(1, "a", 100), version(2, "b", 200)
    kept = gate(v1, candidate("b"), "f", "s", force=False, rolled_back=v2)
    assert not kept.promote and "version 2" in kept.reason and "rolled back" in kept.reason
    assert "--force" in kept.reason and "older version 1" in kept.reason
    assert gate(v1, candidate("b"), "f", "s", force=True, rolled_back=v2).promote
    assert gate(v1, candidate("other"), "f", "s", force=False, rolled_back=v2) is None, "another run is compared"


@pytest.mark.integration  # five tunes in one store
def test_a_plain_tune_after_a_rollback_does_not_promote_the_version_rolled_back_from(project, config, capsys):
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
    params = project / "params.yaml"
    params.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(second)))))
    capsys.readouterr()
    assert tune_command.main(["--params", str(params)]) == 0  # nothing changed: the study is complete
    out = capsys.readouterr().out
    assert "msc version 2, which was rolled back from" in out and "Production stays msc version 1" in out
    assert sorted(int(v.version) for v in client.search_model_versions("name='msc'")) == [1, 2]
    assert str(client.get_model_version_by_alias("msc", "production").version) == "1"
    written = json.loads((project / "results" / "metrics.json").read_text())
    assert written["version"] == 1 and not written["promoted_now"] and "version 2" in written["gate"]
    # Another run (version 1's configuration in another study: the same scores) is compared as usual.
    third = tune(with_overrides(weak, {"tune.study_name": "third"})).summary.registration
    assert third.compared_with_version == 1 and "rolled back" not in third.gate and not third.promoted_now
    # --force registers the rolled-back run again, as a new version.
    assert tune_command.main(["--params", str(params), "--force"]) == 0
    production = client.get_model_version_by_alias("msc", "production")
    assert production.tags["mlflow_run_id"] == client.get_model_version("msc", "2").tags["mlflow_run_id"]
    assert int(production.version) == 3 and "Production is now msc version 3" in capsys.readouterr().out
