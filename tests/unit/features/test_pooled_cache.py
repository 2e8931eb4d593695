"""Issue 34, item 3: a pooled-only cache (``features.token_states: false``) holds no token states; the
pooled heads train on it with the values of the full cache, and a token head is refused with one sentence."""

from dataclasses import replace

import numpy as np
import pytest

from msc.config import with_overrides
from msc.core.errors import UserError
from msc.data.split import write_splits
from msc.features.build import featurize
from msc.features.cache import open_cache
from msc.features.splits import load_splits
from msc.train.loop import train_head
from msc.tune.runner import check_token_heads
from tests.helpers import cache_sections

TOKEN_ARRAYS = {"text_tokens", "image_tokens", "aug_tokens"}


def test_a_pooled_only_cache_trains_the_pooled_heads_and_refuses_the_token_heads(private_config):
    full_config = with_overrides(private_config, {"features.augment_views": 1})
    pooled_config = with_overrides(full_config, {"features.dir": str(full_config.features.dir) + "-pooled",
                                                 "features.token_states": False})
    full, _ = featurize(*cache_sections(full_config))
    pooled, built = featurize(*cache_sections(pooled_config))
    assert built and not pooled.token_states and full.token_states
    assert TOKEN_ARRAYS <= set(full.manifest.arrays) and not TOKEN_ARRAYS & set(pooled.manifest.arrays)
    size = {name: sum(record["bytes"] for record in cache.manifest.arrays.values())
            for name, cache in (("full", full), ("pooled", pooled))}
    assert 0 < size["pooled"] < size["full"] / 4
    for name in ("text_pooled", "image_pooled", "aug_pooled", "text_mask"):
        np.testing.assert_array_equal(pooled.array(name), full.array(name))
    assert pooled.fingerprint != full.fingerprint  # a pooled cache is not taken for a full one, nor the reverse
    write_splits(full_config.data.source, full_config.data.splits_dir, full_config.data.split_rule)
    splits = load_splits(full_config.data, full)
    for fusion in ("late", "gated"):
        train = replace(full_config.train, fusion=fusion, epochs=2)
        assert train_head(pooled, splits.train, splits.val, train).val_scores == \
            train_head(full, splits.train, splits.val, train).val_scores
    with pytest.raises(UserError, match="a token head .* needs the token states, and the feature cache .* has none "
                                        r"\(features.token_states: false\)"):
        train_head(pooled, splits.train, splits.val, replace(full_config.train, fusion="early", epochs=1))
    with pytest.raises(UserError, match="stale: features.token_states changed"):  # the config says full, the cache is not
        open_cache(full_config.data, full_config.model, replace(pooled_config.features, token_states=True))


def test_tune_refuses_a_token_head_in_params_or_in_the_search_space_before_any_trial(private_config):
    pooled_config = with_overrides(private_config, {"features.token_states": False, "train.fusion": "late"})
    pooled, _ = featurize(*cache_sections(pooled_config))
    with pytest.raises(UserError, match=r"train.fusion cross_attention and early \(in train.fusion or "
                                        r"tune.search_space.train.fusion.choices\) needs the token states"):
        check_token_heads(pooled_config, pooled)  # the committed space draws early and cross_attention
    only_pooled = with_overrides(pooled_config, {"tune.search_space": {"train": {
        "fusion": {"type": "categorical", "choices": ["late", "gated"]}}}})
    check_token_heads(only_pooled, pooled)
    with pytest.raises(UserError, match="train.fusion early .* needs the token states"):
        check_token_heads(with_overrides(only_pooled, {"train.fusion": "early"}), pooled)
    with pytest.raises(UserError, match="key 'features.token_states' must be of type bool"):
        with_overrides(private_config, {"features.token_states": "no"})
