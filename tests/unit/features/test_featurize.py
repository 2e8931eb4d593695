import json
from pathlib import Path

import numpy as np
import pytest

from msc.config import with_overrides
from msc.core.errors import UserError
from msc.features.build import featurize
from msc.features.cache import FeatureCache, open_cache
from tests.helpers import TEST_SHAPE, cache_sections, image_side_and_tokens


def test_cache_shapes_and_half_precision(cache, config):
    n, n_lab = len(cache.guids), cache.n_labelled
    assert cache.array("text_pooled").shape == (n, cache.dim)
    assert cache.array("text_pooled").dtype == np.float16
    _, image_tokens = image_side_and_tokens()
    assert cache.array("image_tokens").shape == (n, image_tokens, cache.dim)
    assert cache.array("aug_tokens").shape == (n_lab, 2, image_tokens, cache.dim)
    assert cache.array("text_mask").dtype == np.bool_
    # Augmented views differ from the clean view, and from each other.
    clean, aug = cache.array("image_pooled")[:n_lab], cache.array("aug_pooled")
    assert not np.allclose(clean, aug[:, 0]) and not np.allclose(aug[:, 0], aug[:, 1])
    batch = cache.batch(np.array([0, 1]), views=np.array([0, 2]), tokens=True)
    assert np.allclose(batch.image_pooled[0].numpy(), clean[0].astype(np.float32))
    assert np.allclose(batch.image_pooled[1].numpy(), aug[1, 1].astype(np.float32))


def test_staleness_rule(private_config):
    config = private_config
    _, built = featurize(*cache_sections(config))
    assert built
    _, built = featurize(*cache_sections(config))
    assert not built, "an unchanged input must reuse the cache"
    # Speed settings do not invalidate it ...
    _, built = featurize(*cache_sections(with_overrides(config, {"features.batch_size": 7, "features.num_workers": 1})))
    assert not built
    # ... but data, preprocessing and the backbone do.
    text = next((Path(config.data.root) / "data").glob("*.txt"))
    text.write_text(text.read_text() + " changed")
    _, built = featurize(*cache_sections(config))
    assert built, "an edited sample must rebuild"
    _, built = featurize(*cache_sections(with_overrides(config, {"features.augment_views": 1})))
    assert built, "a preprocessing change must rebuild"


def test_backbone_change_rebuilds(private_config, tmp_path):
    from msc.model.tiny import write_backbone

    featurize(*cache_sections(private_config))
    other = tmp_path / "other-clip"
    write_backbone(other, TEST_SHAPE, seed=1)
    _, built = featurize(*cache_sections(with_overrides(private_config, {"model.backbone": str(other)})))
    assert built


def test_half_written_cache_is_never_used(private_config):
    """A killed run leaves a staging folder and no manifest: it is rebuilt, never read."""
    config = private_config
    cache, _ = featurize(*cache_sections(config))
    folder = cache.folder
    staging = folder.with_name(folder.name + ".tmp")
    staging.mkdir()
    (staging / "text_pooled.npy").write_bytes(b"partial")
    (folder / "manifest.json").unlink()  # as if killed between the swap's two renames
    with pytest.raises(UserError, match="manifest.json.*python -m src.featurize"):
        FeatureCache(folder)
    rebuilt, built = featurize(*cache_sections(config))
    assert built and not staging.exists()
    assert json.loads((folder / "manifest.json").read_text())["fingerprint"] == rebuilt.fingerprint


def test_bad_files_stop_before_any_work_and_are_all_listed(private_config):
    folder = Path(private_config.data.root) / "data"
    for guid in ("1", "2"):
        (folder / f"{guid}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "3.txt").unlink()
    with pytest.raises(UserError, match=r"3 listed samples cannot be used: 1 \(.*1\.jpg.*\), 2 \(.*2\.jpg.*\), "
                                        r"3 \(no file .*3\.txt\).*data\.on_error: skip"):
        featurize(*cache_sections(private_config))
    assert not Path(private_config.features.dir).exists()


def test_skip_drops_bad_labelled_samples_and_blanks_bad_test_modalities(private_config, capsys):
    from msc.data.dataset import load_dataset

    config = with_overrides(private_config, {"data.on_error": "skip"})
    dataset = load_dataset(config.data.source)
    folder = Path(config.data.root) / "data"
    labelled, test = [s.guid for s in dataset.labelled], [s.guid for s in dataset.test]
    (folder / f"{labelled[0]}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / f"{labelled[1]}.txt").unlink()
    (folder / f"{test[0]}.jpg").write_bytes(b"not an image")
    (folder / f"{test[1]}.txt").unlink()
    cache, built = featurize(*cache_sections(config))
    assert built
    assert [item["guid"] for item in cache.manifest.skipped] == labelled[:2]
    assert cache.n_labelled == len(labelled) - 2 and labelled[0] not in cache.guids
    assert cache.guids[cache.n_labelled:] == test, "test samples are never dropped"
    row_image, row_text = cache.guids.index(test[0]), cache.guids.index(test[1])
    assert not cache.array("image_pooled")[row_image].any() and cache.array("text_pooled")[row_image].any()
    assert not cache.array("text_pooled")[row_text].any() and cache.array("image_pooled")[row_text].any()
    err = capsys.readouterr().err
    assert f"skipped labelled sample {labelled[0]}" in err and f"test sample {test[0]}: image unusable" in err
    assert featurize(*cache_sections(config))[1] is False, "the same files give the same cache"




def test_stages_that_read_the_cache_stop_when_it_is_missing_or_stale(private_config, monkeypatch):
    from msc.features import manifest as features

    with pytest.raises(UserError, match="manifest.json.*python -m src.featurize"):
        open_cache(*cache_sections(private_config, device=True))
    featurize(*cache_sections(private_config))
    assert open_cache(*cache_sections(private_config, device=True)).fingerprint
    with pytest.raises(UserError, match="is stale: features.augment_views changed.*python -m src.featurize"):
        open_cache(*cache_sections(with_overrides(private_config, {"features.augment_views": 1}), device=True))
    with pytest.raises(UserError, match="is stale: model.precision changed"):
        open_cache(*cache_sections(with_overrides(private_config, {"model.precision": "bf16"}), device=True))
    # Speed settings are not part of it.
    open_cache(*cache_sections(with_overrides(private_config, {"features.batch_size": 3, "model.device": "cpu"}), device=True))
    # An edit to the preprocessing code: stale for readers, and rebuilt by featurize, no version bump needed.
    monkeypatch.setattr(features, "preprocessing_code_hash", lambda: "edited")
    with pytest.raises(UserError, match=r"preprocessing code \(src/msc/features/build.py.*python -m src.featurize"):
        open_cache(*cache_sections(private_config, device=True))
    assert featurize(*cache_sections(private_config))[1], "featurize rebuilds for changed preprocessing code"


def test_bf16_precision_changes_the_fingerprint(private_config):
    from msc.features.manifest import cache_fingerprint

    assert cache_fingerprint(*cache_sections(private_config), "data") != cache_fingerprint(
        *cache_sections(with_overrides(private_config, {"model.precision": "bf16"})), "data")
    assert cache_fingerprint(*cache_sections(private_config), "data") == cache_fingerprint(
        *cache_sections(with_overrides(private_config, {"model.precision": "fp32"})), "data"), \
        "auto is fp32 on a CPU: the same values"


def test_equivalent_settings_reuse_the_cache_and_record_themselves(private_config):
    cache, built = featurize(*cache_sections(private_config))
    fp32 = with_overrides(private_config, {"model.precision": "fp32"})
    with pytest.raises(UserError, match="model.precision changed"):
        open_cache(*cache_sections(fp32, device=True))
    reused, built = featurize(*cache_sections(fp32))
    assert not built and reused.fingerprint == cache.fingerprint
    assert open_cache(*cache_sections(fp32, device=True)).fingerprint == cache.fingerprint
