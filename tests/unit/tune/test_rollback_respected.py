"""Rollbacks are respected (issue 30, item 7): after alias ``production`` was moved by hand from the
version msc promoted last to an older one, a plain tune keeps that version's run out and says so;
``--force`` registers it again; another run is compared as usual."""

from types import SimpleNamespace

from msc.track.registry import PROMOTED_AT, Candidate, gate, rolled_back_from


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


