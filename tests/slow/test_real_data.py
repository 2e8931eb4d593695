"""The real course data (../shared/mvsa), read end to end. Slow; skips where the folder is absent."""

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from msc.data.dataset import load_dataset
from msc.data.posts import DataSource
from msc.data.split import write_splits
from msc.data.text import decode_text
from msc.features.build import featurize
from msc.features.splits import load_splits
from msc.train.loop import train_head
from tests.helpers import REPO, cache_sections, make_config

MVSA = REPO.parent / "shared" / "mvsa"
pytestmark = pytest.mark.skipif(not MVSA.is_dir(), reason=f"no real data at {MVSA}")


def test_every_real_text_decodes_and_the_label_files_load():
    dataset = load_dataset(DataSource(MVSA))
    assert len(dataset.labelled) == 4000 and len(dataset.test) == 511
    assert Counter(s.label for s in dataset.labelled) == {"positive": 2388, "negative": 1193, "neutral": 419}
    encodings = Counter(decode_text(p.read_bytes())[1] for p in Path(MVSA, "data").glob("*.txt"))
    assert encodings == {"utf-8": 3738, "gb18030": 1131}, "no text needs replacement characters"


def test_real_data_featurizes_and_trains(tmp_path, tiny_clip):
    config = make_config(MVSA, tiny_clip, tmp_path / "features", {"features.augment_views": 1, "train.epochs": 2})
    cache, built = featurize(*cache_sections(config))
    assert built and len(cache.guids) == 4511 and cache.n_labelled == 4000
    write_splits(config.data.source, config.data.splits_dir, config.data.split_rule)
    splits = load_splits(config.data, cache)
    assert (len(splits.train), len(splits.val), len(splits.holdout)) == (2800, 600, 600)
    result = train_head(cache, splits.train, splits.val, replace(config.train, fusion="cross_attention"))
    assert np.isfinite(result.history[-1]["val_loss"])
