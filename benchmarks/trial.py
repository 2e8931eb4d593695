"""Section ``trial``: one 10-epoch trial of each of ``late`` and ``early`` on cached features, against
the same trial re-encoding every training and validation sample through the backbone each epoch.

The re-encoding cost per sample is measured on real files through the prediction path and
multiplied out; it is an extrapolation from a measured per-sample cost, not a run of hours.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from benchmarks.common import MAX_TOKENS
from msc.config import TrainConfig
from msc.data.dataset import load_dataset
from msc.data.images import open_image
from msc.data.posts import DataSource, Sample
from msc.data.split import assign_splits
from msc.data.text import decode_text
from msc.features.cache import FeatureCache
from msc.model.backbone import load_backbone
from msc.model.pyfunc import PREDICT_BATCH, encode_inputs
from msc.train.loop import train_head

REENCODE_SAMPLES = 128  # samples whose re-encoding cost is measured for the trial comparison
EPOCHS = 10


def encode_seconds_per_sample(backbone_name: str, samples: list[Sample]) -> float:
    """What a trial without the cache does per sample and epoch: read, decode and encode it."""
    backbone = load_backbone(backbone_name)
    started = time.perf_counter()
    for start in range(0, len(samples), PREDICT_BATCH):
        chunk = samples[start : start + PREDICT_BATCH]
        encode_inputs(backbone, [decode_text(s.text_path.read_bytes())[0] for s in chunk],
                      [backbone.preprocess_image(open_image(s.image_path)) for s in chunk], MAX_TOKENS)
    return (time.perf_counter() - started) / len(samples)


def bench_trial(args, work: Path) -> dict:
    cache = FeatureCache(args.features)
    names = np.array(assign_splits(cache.manifest.labels, 0.15, 0.15, 42))  # the default split parameters
    splits = SimpleNamespace(train=np.flatnonzero(names == "train"), val=np.flatnonzero(names == "val"))
    by_guid = {s.guid: s for s in load_dataset(DataSource(args.data_root)).labelled}
    # Re-encoding cost: what a trial without the cache does per sample and epoch, on real files.
    samples = [by_guid[cache.guids[r]] for r in splits.train[:REENCODE_SAMPLES]]
    per_sample = encode_seconds_per_sample(args.backbone, samples)
    encoded_per_trial = EPOCHS * (len(splits.train) + len(splits.val))
    result = {"train_samples": len(splits.train), "val_samples": len(splits.val),
              "encode_seconds_per_sample": per_sample, "heads": {}}
    for fusion in ("late", "early"):
        config = replace(TrainConfig(), fusion=fusion, epochs=EPOCHS, patience=EPOCHS)
        started = time.perf_counter()
        train_head(cache, splits.train, splits.val, config)
        cached = time.perf_counter() - started
        reencoding = cached + encoded_per_trial * per_sample
        result["heads"][fusion] = {"cached_seconds": cached, "reencoding_seconds": reencoding,
                                   "ratio": reencoding / cached}
        print(f"trial {fusion}: cached {cached:.1f}s, re-encoding {reencoding:.0f}s, {reencoding / cached:.0f}x")
    return result
