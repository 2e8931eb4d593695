"""A hub backbone is identified by the commit its revision named, offline too: when the hub's `main`
moves, featurize rebuilds, and the registered model never runs its head on other weights."""

import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import yaml
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts

from msc.model.provenance import ACCEPT_ENV, ACCEPT_KEY
from msc.model.tiny import write_backbone
from tests.helpers import REPO, make_config, sh
from tests.unit.model.test_provenance import HUB_ID, commit_of, point_ref

FIRST, SECOND = commit_of("first"), commit_of("second")


def stage(project: Path, env: dict, *args: str, check: bool = True):
    return sh(sys.executable, "-m", *args, cwd=project, env=env, check=check)


def test_a_moved_hub_main_rebuilds_the_cache_and_the_registered_model_keeps_its_commit(tmp_path, small_sample_root,
                                                                                         monkeypatch):

    hub = tmp_path / "hf" / "hub"  # HF_HOME/hub, as `huggingface-cli download` fills it
    snapshots = hub / f"models--{HUB_ID.replace('/', '--')}" / "snapshots"
    write_backbone(snapshots / FIRST, "tiny", seed=0)
    write_backbone(snapshots / SECOND, "tiny", seed=1)  # other weights, as a new commit on the hub would bring
    point_ref(hub, FIRST)
    project = tmp_path / "project"
    shutil.copytree(small_sample_root, project / "data")
    config = make_config(project / "data", HUB_ID, project / "features", {"features.augment_views": 0, "train.epochs": 2})
    (project / "params.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(asdict(config)))))
    env = {"PYTHONPATH": str(REPO), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    for args in (["src.split"], ["src.featurize"], ["src.tune", "--trials", "2"], ["src.predict"]):
        stage(project, env, *args)
    first_labels = (project / "results" / "test_with_label.txt").read_text()
    identity = f"hub:{HUB_ID}@{FIRST}"
    assert json.loads((project / "features" / "manifest.json").read_text())["backbone_identity"] == identity

    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    client = MlflowClient()
    version = client.get_model_version_by_alias("msc", "production")
    model = Path(download_artifacts(f"models:/msc/{version.version}", dst_path=str(tmp_path / "registered")))
    head = json.loads((model / "artifacts" / "head.json").read_text())
    assert head["backbone_identity"] == identity and head["revision"] == "main"
    assert version.tags["backbone_identity"] == identity and len(version.tags["model_digest"]) == 64
    assert client.get_run(version.run_id).data.params["backbone_identity"] == identity

    point_ref(hub, SECOND)  # the hub's main moved to other weights
    rebuilt = stage(project, env, "src.featurize")
    assert f"rebuilding the feature cache: the backbone is now hub:{HUB_ID}@{SECOND}" in rebuilt.stderr
    assert json.loads((project / "features" / "manifest.json").read_text())["backbone_identity"] == \
        f"hub:{HUB_ID}@{SECOND}"
    # The registered model loads the commit its head was trained on while the cache holds it: same labels.
    stage(project, env, "src.predict")
    assert (project / "results" / "test_with_label.txt").read_text() == first_labels
    # Once that commit is gone from the cache, it refuses the other weights in one sentence.
    shutil.rmtree(snapshots / FIRST)
    refused = stage(project, env, "src.predict", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"records {identity}" in refused.stderr and f"its 'main' is hub:{HUB_ID}@{SECOND}" in refused.stderr
    assert f"huggingface-cli download {HUB_ID} --revision {FIRST}" in refused.stderr and ACCEPT_KEY in refused.stderr
    accepted = stage(project, {**env, ACCEPT_ENV: "1"}, "src.predict")
    assert "accepted on purpose" in accepted.stderr
