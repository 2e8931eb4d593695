"""Which backbone a cache and a model were made with: a hub revision resolved to its commit (also
offline, from the Hugging Face cache), a local folder by the digest of its files; a logged model
refuses a backbone of another identity, and a model logged before identities loads with a warning."""

import hashlib
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from msc.config import TrainConfig
from msc.core.errors import UserError
from msc.features.manifest import cache_fingerprint
from msc.model.heads import build_head
from msc.model.provenance import ACCEPT_ENV, ACCEPT_KEY, backbone_identity
from msc.model.spec import head_spec, write_head
from msc.model.tiny import write_backbone
from msc.track.inference import load_model
from msc.track.logged_model import log_pyfunc, log_trial_model
from tests.helpers import TEST_SHAPE, cache_sections

HUB_ID = "msc-test/tiny-clip"
LABELS = ("positive", "neutral", "negative")


def commit_of(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # 40 hex digits, like a git commit


def hub_snapshot(cache: Path, commit: str, config: str = '{"model_type": "clip"}') -> Path:
    """A snapshot of HUB_ID in a Hugging Face hub cache folder, as `huggingface-cli download` leaves it."""
    snapshot = cache / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(config)
    return snapshot


def point_ref(cache: Path, commit: str, ref: str = "main") -> None:
    refs = cache / f"models--{HUB_ID.replace('/', '--')}" / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / ref).write_text(commit)


@pytest.fixture()
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty hub cache that huggingface_hub reads offline (its constants are read at import: the
    variables HF_HOME and HF_HUB_OFFLINE would come too late in this process)."""
    import huggingface_hub.constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def test_a_hub_revision_is_resolved_to_its_commit_offline(offline_hub, private_config):
    first, second = commit_of("first"), commit_of("second")
    hub_snapshot(offline_hub, first)
    hub_snapshot(offline_hub, second)
    point_ref(offline_hub, first)
    point_ref(offline_hub, second, ref="v2")
    assert backbone_identity(HUB_ID, "main") == f"hub:{HUB_ID}@{first}"
    assert backbone_identity(HUB_ID, "v2") == f"hub:{HUB_ID}@{second}"  # a tag, read from refs/ too
    assert backbone_identity(HUB_ID, second) == f"hub:{HUB_ID}@{second}"  # a pinned commit is itself
    fingerprint = cache_fingerprint(*cache_sections(private_config), "data", backbone_identity(HUB_ID, "main"))
    point_ref(offline_hub, second)  # the hub's main moved
    assert backbone_identity(HUB_ID, "main") == f"hub:{HUB_ID}@{second}"
    assert cache_fingerprint(*cache_sections(private_config), "data", backbone_identity(HUB_ID, "main")) != fingerprint
    with pytest.raises(UserError, match="huggingface-cli download.*revision 'v3' to a commit failed"):
        backbone_identity(HUB_ID, "v3")  # a revision the cache does not hold: the offline sentence
    with pytest.raises(UserError, match="is a path, and there is no folder there"):
        backbone_identity("./models/not-there", "main")


def test_a_folder_is_identified_by_its_files(tmp_path, tiny_clip):
    folder = shutil.copytree(tiny_clip, tmp_path / "backbone")
    identity = backbone_identity(str(folder), "main")
    assert identity.startswith("folder:") and identity == backbone_identity(str(tiny_clip), "ignored for a folder")
    write_backbone(folder, TEST_SHAPE, seed=1)  # another seed of the sample backbone, same file names
    assert backbone_identity(str(folder), "main") != identity


def logged_model(folder: Path, backbone: Path) -> Path:
    """A trial's model over ``backbone``, downloaded into ``folder``."""
    with mlflow.start_run():
        info = log_trial_model(build_head("late", 128, 8, 0.0, 3), TrainConfig(hidden_dim=8), 128, str(backbone),
                               "main", 77, LABELS)  # identified as featurize would: the folder's digest now
    return Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(folder)))


def probabilities(model, sample_root: Path) -> pd.DataFrame:
    images = sorted((sample_root / "data").glob("*.jpg"))[:2]
    frame = pd.DataFrame({"text": ["so happy", "awful"], "image": [str(p) for p in images]})
    return model.predict(frame)[["p_positive", "p_neutral", "p_negative"]]


def test_a_replaced_backbone_folder_is_refused_unless_accepted(project, tiny_clip, sample_root, monkeypatch, recwarn):
    backbone = shutil.copytree(tiny_clip, project / "backbone")
    expected = backbone_identity(str(backbone), "main")
    model_folder = logged_model(project / "downloaded", backbone)
    before = probabilities(load_model(str(model_folder)), sample_root)
    assert not [w for w in recwarn if "cannot" in str(w.message)]  # identified and checked: no warning
    write_backbone(backbone, TEST_SHAPE, seed=1)  # another seed of `src.sample` into the same folder
    found = backbone_identity(str(backbone), "main")
    with pytest.raises(UserError) as refused:
        load_model(str(model_folder))
    sentence = str(refused.value)
    assert f"records {expected}" in sentence and f"is {found}" in sentence and str(backbone) in sentence
    assert "original files back" in sentence and ACCEPT_KEY in sentence and ACCEPT_ENV in sentence
    # Accepted on purpose: it loads the new backbone, says so, and its probabilities are not the old ones.
    monkeypatch.setenv(ACCEPT_ENV, "1")
    with pytest.warns(UserWarning, match="accepted on purpose"):
        accepted = load_model(str(model_folder))
    assert not probabilities(accepted, sample_root).equals(before)
    monkeypatch.delenv(ACCEPT_ENV)
    with pytest.warns(UserWarning, match="accepted on purpose"):  # the same through model_config
        mlflow.pyfunc.load_model(str(model_folder), model_config={"trusted_input": True, ACCEPT_KEY: True})


def test_a_model_logged_before_identities_loads_with_a_warning(project, tiny_clip):
    # What a head.json of spec version 1 is read as (HeadSpec.UPGRADES): no recorded identity to check.
    spec = head_spec(asdict(TrainConfig(hidden_dim=8)), 128, str(tiny_clip), "main", 77, LABELS)
    assert spec.backbone_identity is None
    with mlflow.start_run(), tempfile.TemporaryDirectory() as tmp:
        info = log_pyfunc(write_head(build_head("late", 128, 8, 0.0, 3), spec, Path(tmp)))
    with pytest.warns(UserWarning, match="logged before msc recorded backbone identities, so it cannot check"):
        load_model(info.model_uri)
