"""model.runtime in the feature cache's identity: a torch cache is never taken for an onnxruntime one."""

from dataclasses import fields

import pytest

from msc.config import with_overrides
from msc.core.errors import UserError
from msc.features.build import featurize
from msc.features.manifest import CacheManifest, cache_fingerprint, check_settings, preprocessing_settings, read_manifest
from msc.features.shards import build_shard
from msc.model.onnx_towers import CACHE_ENV
from tests.helpers import cache_sections


def test_runtime_and_its_precision_change_the_fingerprint(private_config):
    def fingerprint(**overrides) -> str:
        return cache_fingerprint(*cache_sections(with_overrides(private_config, overrides)), "data", "folder:x")

    prints = {fingerprint(), fingerprint(**{"model.runtime": "onnxruntime"}),
              fingerprint(**{"model.runtime": "onnxruntime", "model.precision": "int8"})}
    assert len(prints) == 3
    assert fingerprint(**{"model.runtime": "onnxruntime"}) == fingerprint(
        **{"model.runtime": "onnxruntime", "model.precision": "fp32"}), "auto is fp32 under onnxruntime"


def test_a_cache_built_before_the_runtime_was_recorded_is_a_torch_cache(private_config, tmp_path):
    sections = cache_sections(private_config)
    recorded = preprocessing_settings(*sections)
    del recorded["model.runtime"]
    # check_settings reads the recorded settings alone: the other fields are placeholders.
    manifest = CacheManifest(**{field.name: None for field in fields(CacheManifest)} | {"preprocessing": recorded})
    check_settings(manifest, *sections, tmp_path)  # torch: fresh
    onnx = cache_sections(with_overrides(private_config, {"model.runtime": "onnxruntime"}))
    with pytest.raises(UserError, match="is stale: model.runtime changed"):
        check_settings(manifest, *onnx, tmp_path)


@pytest.mark.parametrize("build", ["featurize", "shard"])
def test_onnxruntime_refuses_cached_hidden_states_before_any_work(private_config, tmp_path, monkeypatch, build):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "towers"))
    config = with_overrides(private_config, {"model.runtime": "onnxruntime", "features.top_layers": 1})
    with pytest.raises(UserError, match="not the hidden states that features.top_layers K > 0 caches.*model.runtime: "
                                        "torch"):
        if build == "featurize":
            featurize(*cache_sections(config))
        else:
            build_shard(*cache_sections(config), 1, 2)
    assert not (tmp_path / "towers").exists(), "refused before the towers were exported"
    with pytest.raises(UserError):
        read_manifest(config.features.dir)  # nothing was written
