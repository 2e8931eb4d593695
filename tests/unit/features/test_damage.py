"""An operator's bad day (issue 24): cache files damaged behind the manifest's back, a cache swapped
under a reader, a full disk. Each leaves no lie behind: a sentence with the fix, or the old state."""

import contextlib
import errno
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from msc.config import with_overrides
from msc.core.errors import UserError
from msc.features.build import featurize
from msc.features.cache import FeatureCache, open_cache
from msc.features.writer import NpyWriter
from tests.helpers import cache_sections


def damage(folder, how: str) -> None:
    path = folder / "image_pooled.npy"
    if how == "deleted":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:-64])
    elif how == "nan":  # same size, same header: only the values changed
        values = np.load(path, mmap_mode="r+")
        values[3] = np.nan
        values.flush()


@pytest.mark.parametrize("how, problem", [("deleted", "is missing"), ("truncated", "is [0-9,]+ bytes where featurize wrote"),
                                          ("nan", "holds NaN or infinite values")])
def test_a_damaged_cache_is_a_sentence_for_readers_and_rebuilt_by_featurize(private_config, tmp_path, capsys,
                                                                            how, problem):
    from src import split, tune

    cache, _ = featurize(*cache_sections(private_config))
    damage(cache.folder, how)
    with pytest.raises(UserError, match=f"image_pooled.npy {problem}.*featurize --force"):
        open_cache(*cache_sections(private_config, device=True))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(asdict(with_overrides(private_config, {"tune.storage": f"sqlite:///{tmp_path}/o.db"}))))
    assert split.main(["--params", str(params)]) == 0
    assert tune.main(["--params", str(params), "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "image_pooled.npy" in err and "--force" in err and "Traceback" not in err
    rebuilt, built = featurize(*cache_sections(private_config))
    assert built and "rebuilding the feature cache: " in capsys.readouterr().err
    assert np.isfinite(rebuilt.array("image_pooled")).all()


def test_the_backbone_writing_non_finite_features_caches_nothing(tmp_path):
    writer = NpyWriter(tmp_path / "x.npy", (2, 3), np.float16, 1)
    writer.write(0, np.ones((1, 3)))
    with pytest.raises(UserError, match="NaN or too large for float16.*model.precision: fp32"):
        writer.write(1, np.array([[1.0, 1e6, 0.0]]))  # overflows float16


def test_a_reader_keeps_the_build_it_opened_when_featurize_swaps_in_another(private_config, tmp_path):
    """Every array is mapped when the cache opens: a rebuild swapped in later is not mixed in."""
    config = with_overrides(private_config, {"features.augment_views": 1})
    before, _ = featurize(*cache_sections(config))
    kept = shutil.copytree(before.folder, tmp_path / "copy")
    reader = FeatureCache(config.features.dir)
    rebuilt, built = featurize(*cache_sections(with_overrides(config, {"features.seed": 7})), force=True)  # other augmented views
    assert built and not np.array_equal(rebuilt.array("aug_pooled"), np.load(kept / "aug_pooled.npy"))
    for name in ("aug_pooled", "aug_tokens", "image_pooled", "text_tokens"):
        assert np.array_equal(reader.array(name), np.load(kept / f"{name}.npy")), name
    assert reader.fingerprint == before.fingerprint != rebuilt.fingerprint


def test_a_full_disk_during_featurize_is_a_sentence_and_leaves_no_staging(private_config, monkeypatch):
    def full(self, first, block):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(NpyWriter, "write", full)
    with pytest.raises(UserError, match="no space left on the device holding .*features.tmp"):
        featurize(*cache_sections(private_config))
    folder = Path(private_config.features.dir)
    assert not folder.with_name(folder.name + ".tmp").exists()


def test_an_open_that_sees_two_builds_tries_again(private_config, monkeypatch):
    """A rebuild swapped in between the two reads of the manifest (same settings, so the same
    fingerprint; another build id): the open maps the arrays again."""
    from dataclasses import replace

    from msc.features import cache as cache_module

    built, _ = featurize(*cache_sections(private_config))
    real = cache_module.read_manifest
    calls = []

    def swapped_once(folder):
        calls.append(folder)
        manifest = real(folder)
        return replace(manifest, build_id="another build") if len(calls) == 2 else manifest

    monkeypatch.setattr(cache_module, "read_manifest", swapped_once)
    opened = FeatureCache(private_config.features.dir)
    assert len(calls) == 4 and opened.manifest.build_id == built.manifest.build_id


@pytest.mark.parametrize("writer", [False, True], ids=["no writer", "a writer at work"])
def test_a_missing_cache_is_retried_only_while_a_writer_holds_its_lock(tmp_path, monkeypatch, writer):
    """No cache and nobody writing one: the sentence at once (each stage before featurize waited 0.8 s for
    it). A writer holding the lock may be between its swap's two renames: the open waits for it."""
    from msc.core.files import file_lock
    from msc.features import cache as cache_module

    sleeps = []
    monkeypatch.setattr(cache_module.time, "sleep", sleeps.append)
    folder = tmp_path / "features"
    with file_lock(cache_module.cache_lock(folder)) if writer else contextlib.nullcontext():
        with pytest.raises(UserError, match="python -m src.featurize"):
            FeatureCache(folder)
    assert len(sleeps) == (4 if writer else 0)
    assert not cache_module.cache_lock(folder).exists() or writer, "a reader creates no lock file"


@pytest.mark.parametrize("writer", [False, True], ids=["writer done before the check", "writer still at work"])
def test_a_manifest_hidden_by_a_swap_is_read_once_the_writer_is_done(cache, monkeypatch, writer):
    """The first read of the manifest falls in a swap's gap. Still held: the open waits and tries again.
    Already released (the writer finished between the read and the check): one more read finds the cache.
    The session's cache, only read (its lock held a moment, as featurize would)."""
    from msc.core.files import file_lock
    from msc.features import cache as cache_module

    built = cache
    real, reads, sleeps = cache_module.read_manifest, [], []

    def hidden_once(folder):
        reads.append(folder)
        if len(reads) == 1:
            raise UserError("no manifest for a moment")
        return real(folder)

    monkeypatch.setattr(cache_module, "read_manifest", hidden_once)
    monkeypatch.setattr(cache_module.time, "sleep", sleeps.append)
    with file_lock(cache_module.cache_lock(built.folder)) if writer else contextlib.nullcontext():
        opened = FeatureCache(built.folder)
    assert opened.manifest.build_id == built.manifest.build_id and len(sleeps) == (1 if writer else 0)
