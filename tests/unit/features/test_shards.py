"""Issue 34, item 2: the feature cache built in shards (``--shard i/n``) and merged (``--merge``).

The two-machine run in subprocesses, compared bit for bit with one process and tuned on, is
tests/integration/test_featurize_shards.py; here, in process: the merge against one process at the
default batch size, and every refusal of the merge and of ``--shard``'s spelling.
"""

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import yaml

import src.featurize
from msc.config import with_overrides
from msc.core.errors import UserError
from msc.core.handoff import write_handoff
from msc.features.build import featurize
from msc.features.merge import merge_shards
from msc.features.shards import SHARD_MANIFEST, build_shard, parse_shard, read_shard, shard_of
from tests.helpers import cache_sections, committed_params, make_config

SETTINGS = {"features.augment_views": 1, "features.text_augment_views": 1}


@pytest.fixture(scope="module")
def built(small_sample_root, tiny_clip, tmp_path_factory):
    """The two shards of the small sample's cache, and one of another build (features.seed: 1)."""
    where = tmp_path_factory.mktemp("shards")
    config = make_config(small_sample_root, tiny_clip, where / "features", SETTINGS)
    for shard in (1, 2):
        _, made = build_shard(*cache_sections(config), shard, 2)
        assert made
    other = with_overrides(config, {"features.dir": str(where / "other"), "features.seed": 1})
    build_shard(*cache_sections(other), 2, 2)
    return config, where


@pytest.fixture()
def shards(built, tmp_path):
    """A copy of the built shards in this test's own features.dir: (config, its shards folder)."""
    config, where = built
    config = with_overrides(config, {"features.dir": str(tmp_path / "features")})
    shutil.copytree(where / "features" / "shards", tmp_path / "features" / "shards")
    return config, tmp_path / "features" / "shards"


def test_merged_shards_are_the_one_process_cache(built, shards):
    config, root = shards
    merged, n = merge_shards(*cache_sections(config), "params.yaml")
    one, _ = featurize(*cache_sections(with_overrides(config, {"features.dir": str(built[1] / "one")})))
    assert n == 2 and merged.fingerprint == one.fingerprint, "the one-process featurize takes it as its own"
    for field in ("guids", "labels", "label_set", "skipped", "blank_text", "blank_image", "image_quality",
                  "text_tokens", "text_encodings", "data_fingerprint", "backbone_identity"):
        assert getattr(merged.manifest, field) == getattr(one.manifest, field), field
    assert read_shard(root / "1-of-2").digests.keys().isdisjoint(read_shard(root / "2-of-2").digests)
    assert set(merged.manifest.arrays) == set(one.manifest.arrays)
    for name in one.manifest.arrays:
        # Batches differ from one process's (another batch shape can round a float differently, as
        # another features.batch_size does): equal to fp16 rounding here, bit for bit at batch size 1
        # (tests/integration/test_featurize_shards.py).
        assert merged.array(name).shape == one.array(name).shape, name
        np.testing.assert_allclose(merged.array(name).astype(np.float32), one.array(name).astype(np.float32),
                                   rtol=1e-3, atol=1e-3, err_msg=name)  # one fp16 step
    assert (root / "1-of-2").is_dir(), "the shards stay where they are"


def test_a_shard_holds_the_posts_its_guids_hash_to(built):
    config, where = built
    for shard in (1, 2):
        guids = read_shard(where / "features" / "shards" / f"{shard}-of-2").digests
        assert guids and all(shard_of(guid, 2) == shard for guid in guids)


@pytest.mark.parametrize("spelling", ["3/2", "0/2", "a/b", "2", "1/0", "-1/2"])
def test_a_bad_shard_spelling_is_refused(spelling, capsys):
    with pytest.raises(UserError, match=r"--shard .* is not a shard i/n with 1 <= i <= n"):
        parse_shard(spelling)
    assert src.featurize.main(["--params", str(committed_params()), f"--shard={spelling}"]) == 2
    assert "is not a shard i/n" in capsys.readouterr().err


def test_a_missing_shard_is_refused(shards):
    config, root = shards
    (root / "2-of-2").rename(root / "2-of-2.tmp")  # as a killed build leaves it: never taken for a shard
    with pytest.raises(UserError, match=r"shard 2/2 of the feature cache is missing from .*shards: build it with "
                                        r"`python -m src.featurize --shard 2/2`"):
        merge_shards(*cache_sections(config), "params.yaml")


def test_a_repeated_shard_is_refused(shards):
    config, root = shards
    shutil.rmtree(root / "2-of-2")
    shutil.copytree(root / "1-of-2", root / "2-of-2")
    with pytest.raises(UserError, match=r"2-of-2 holds shard 1-of-2, which is there twice"):
        merge_shards(*cache_sections(config), "params.yaml")
    shutil.rmtree(root / "2-of-2")
    shutil.copytree(root / "1-of-2", root / "1-of-2 copy")
    with pytest.raises(UserError, match=r"1-of-2 copy is not a shard folder"):
        merge_shards(*cache_sections(config), "params.yaml")


def test_a_foreign_shard_is_refused(built, shards):
    config, root = shards
    shutil.rmtree(root / "2-of-2")
    shutil.copytree(built[1] / "other" / "shards" / "2-of-2", root / "2-of-2")  # features.seed: 1
    with pytest.raises(UserError, match=r"2-of-2 is a shard of another build than .*1-of-2"):
        merge_shards(*cache_sections(config), "params.yaml")


def test_shards_of_another_count_are_refused(shards):
    config, root = shards
    (root / "1-of-2").rename(root / "1-of-3")  # a leftover of an earlier run in three shards
    write_handoff(root / "1-of-3" / SHARD_MANIFEST, replace(read_shard(root / "1-of-3"), shards=3), indent=None)
    with pytest.raises(UserError, match=r"2-of-2 is one of 2 shards and .*1-of-3 one of 3"):
        merge_shards(*cache_sections(config), "params.yaml")


def test_shards_of_other_settings_than_the_merge_are_refused(shards):
    config, _ = shards
    with pytest.raises(UserError, match=r"were built with other settings, backbone, libraries or data listing than "
                                        r"params.yaml and data.root give here"):
        merge_shards(*cache_sections(with_overrides(config, {"features.seed": 3})), "params.yaml")


def test_no_shards_is_refused(tmp_path, built):
    config = with_overrides(built[0], {"features.dir": str(tmp_path / "features")})
    with pytest.raises(UserError, match=r"there is no shard folder .*shards: build them with"):
        merge_shards(*cache_sections(config), "params.yaml")


def test_a_fresh_shard_is_reused_and_a_damaged_one_rebuilt(shards):
    config, root = shards
    _, made = build_shard(*cache_sections(config), 1, 2)
    assert not made, "a loop over the shards run again skips the finished ones"
    (root / "1-of-2" / "text_pooled.npy").write_bytes(b"damaged")
    _, made = build_shard(*cache_sections(config), 1, 2)
    assert made and not Path(str(root / "1-of-2") + ".tmp").exists()
    (root / "1-of-2" / SHARD_MANIFEST).unlink()
    _, made = build_shard(*cache_sections(config), 1, 2)
    assert made and read_shard(root / "1-of-2").shard == 1


def test_merge_refuses_a_features_dir_it_did_not_write_and_merges_into_its_own(shards, tmp_path, capsys):
    config, root = shards
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(config)))))
    (root.parent / "notes.txt").write_text("a user's")
    assert src.featurize.main(["--params", str(params), "--merge"]) == 2
    assert "was not written by `python -m src.featurize`" in capsys.readouterr().err
    (root.parent / "notes.txt").unlink()
    assert src.featurize.main(["--params", str(params), "--merge"]) == 0
    assert src.featurize.main(["--params", str(params), "--merge"]) == 0, "a merged cache is its own: merged again"
    assert "merged from 2 shards" in capsys.readouterr().out
