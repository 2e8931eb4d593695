"""Section ``top_layers``: what caching the hidden states before the last K blocks costs, and what one
epoch of trainable top layers costs against re-encoding the backbone every epoch.

On a stratified ``--top-layers-fraction`` of the labelled samples and every test sample (the same
files users have), for K = 0, 1, 2: ``src.featurize --force`` wall time and the cache's size on disk.
Then, on the K = 2 cache, one epoch (training split forward and backward, validation forward) of
``late`` and ``cross_attention`` with k = 0, 1, 2 (k > 0: full adapter). Re-encoding is that epoch
plus every training and validation sample read, decoded and encoded through the backbone: the
per-sample cost is measured on real files (``benchmarks/trial.py``) and multiplied out.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.common import dataset_view, run_module, write_params
from benchmarks.trial import encode_seconds_per_sample
from msc.config import TrainConfig
from msc.data.dataset import load_dataset
from msc.data.posts import DataSource
from msc.data.split import assign_splits
from msc.features.cache import FeatureCache
from msc.train.loop import frozen_backbone, train_head

LAYERS = (0, 1, 2)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def bench_top_layers(args, work: Path) -> dict:
    root = dataset_view(args.data_root, work / "data-top-layers", args.top_layers_fraction)
    result = {"labelled_fraction": args.top_layers_fraction, "caches": {}, "epochs": {}}
    for cached in LAYERS:
        params = write_params(work / f"top-layers-{cached}.yaml", root, args.backbone, work / f"features-top-{cached}",
                              features={"top_layers": cached})
        wall, _, _ = run_module("src.featurize", ["--params", str(params), "--force"], work)
        size = folder_bytes(work / f"features-top-{cached}")
        result["caches"][cached] = {"featurize_seconds": wall, "bytes": size}
        print(f"K={cached}: featurize {wall:.0f}s, cache {size / 2**20:.0f} MiB")
    cache = FeatureCache(work / f"features-top-{LAYERS[-1]}")
    names = np.array(assign_splits(cache.manifest.labels, 0.15, 0.15, 42))  # the default split parameters
    train_rows, val_rows = np.flatnonzero(names == "train"), np.flatnonzero(names == "val")
    by_guid = {s.guid: s for s in load_dataset(DataSource(root)).labelled}
    per_sample = encode_seconds_per_sample(args.backbone, [by_guid[cache.guids[r]] for r in train_rows[:64]])
    reencode = per_sample * (len(train_rows) + len(val_rows))
    result.update(samples=len(cache.guids), train_samples=len(train_rows), val_samples=len(val_rows),
                  encode_seconds_per_sample=per_sample)
    frozen_backbone(args.backbone, "main", None)  # loaded once per process: not part of the first k > 0 epoch
    for fusion in ("late", "cross_attention"):
        for k in LAYERS:
            config = replace(TrainConfig(), fusion=fusion, epochs=1, top_layers=k)
            started = time.perf_counter()
            train_head(cache, train_rows, val_rows, config)
            epoch = time.perf_counter() - started
            result["epochs"][f"{fusion} k={k}"] = {"cached_seconds": epoch, "reencoding_seconds": epoch + reencode,
                                                   "ratio": (epoch + reencode) / epoch}
            print(f"{fusion} k={k}: epoch {epoch:.1f}s cached, {epoch + reencode:.0f}s re-encoding")
    return result
