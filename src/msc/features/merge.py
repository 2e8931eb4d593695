"""Merging the shards of a feature cache (msc/features/shards.py) into the one cache.

The merge checks that the folders in ``<features.dir>/shards/`` are the n shards of one build (one
fingerprint, which this params.yaml and data listing give too, one n, each shard once) holding every
listed post once, then writes the cache a one-process featurize writes: the same rows in the same
order, texts trimmed to the longest one, the same fingerprint (the data's, from the shards' file
digests), with the one writer (NpyWriter). It is written into ``<features.dir>`` itself, beside the
shards: staged in ``.merge.tmp/``, the old manifest removed before any array is replaced and the new
one written last, so a reader or a killed merge never takes a half-replaced cache.
"""

from __future__ import annotations

import shutil
import uuid
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

from msc.core.errors import UserError
from msc.core.files import file_lock
from msc.core.handoff import write_handoff
from msc.data.config import DataConfig
from msc.data.posts import Dataset
from msc.features.build import listed_posts
from msc.features.cache import FeatureCache, cache_lock
from msc.features.config import FeaturesConfig
from msc.features.manifest import (
    MANIFEST,
    CacheManifest,
    array_record,
    cache_fingerprint,
    preprocessing_settings,
    read_manifest,
)
from msc.features.screen import data_fingerprint
from msc.features.shards import LEFTOVERS, SHARD_NAME, SHARDS, ShardManifest, read_shard, shard_fingerprint
from msc.features.writer import NpyWriter
from msc.model.config import ModelConfig

STAGING = ".merge.tmp"  # in <features.dir>
CHUNK = 1024  # rows read from a shard's array at a time


def found_shards(root: Path) -> dict[Path, ShardManifest]:
    """Every shard folder in ``root`` with its shard.json; a sentence for anything else there."""
    how = (f"build them with `python -m src.featurize --shard i/n` (i = 1..n, on any machines) and copy each "
           f"machine's folder {root}/i-of-n there")
    if not root.is_dir():
        raise UserError(f"there is no shard folder {root}: {how}")
    found = {}
    for entry in sorted(root.iterdir()):
        if entry.name.endswith(LEFTOVERS):  # a killed or running build's, never a shard
            continue
        if not entry.is_dir() or SHARD_NAME.fullmatch(entry.name) is None:
            raise UserError(f"{entry} is not a shard folder (named i-of-n by `python -m src.featurize --shard i/n`); "
                            f"move it out of {root}")
        found[entry] = read_shard(entry)
    if not found:
        raise UserError(f"there are no shards in {root}: {how}")
    return found


def check_shards(found: dict[Path, ShardManifest], root: Path, expected: str, params: str) -> None:
    """Stop with a sentence unless ``found`` are the n shards of one build, each once, of fingerprint ``expected``."""
    first_folder, first = next(iter(found.items()))
    for folder, shard in found.items():
        if shard.fingerprint != first.fingerprint:
            raise UserError(f"{folder} is a shard of another build than {first_folder} (other settings, backbone, "
                            "libraries or data listing): rebuild it with the others' params.yaml, backbone and data "
                            f"(`python -m src.featurize --shard {shard.shard}/{shard.shards} --force`), or remove the "
                            f"other build's shards from {root}")
        if shard.shards != first.shards:
            raise UserError(f"{folder} is one of {shard.shards} shards and {first_folder} one of {first.shards}: "
                            f"remove the shards of the other count from {root}")
        if folder.name != f"{shard.shard}-of-{shard.shards}":
            raise UserError(f"{folder} holds shard {shard.shard}-of-{shard.shards}, which is there twice: a renamed "
                            f"copy; remove it from {root}")
    missing = [i for i in range(1, first.shards + 1) if root / f"{i}-of-{first.shards}" not in found]
    if missing:
        named = ", ".join(f"{i}/{first.shards}" for i in missing)
        raise UserError(f"shard {named} of the feature cache is missing from {root}: build it with `python -m "
                        f"src.featurize --shard {missing[0]}/{first.shards}` on any machine and copy its folder "
                        f"{missing[0]}-of-{first.shards} there")
    if first.fingerprint != expected:
        raise UserError(f"the shards in {root} were built with other settings, backbone, libraries or data listing "
                        f"than {params} and data.root give here: merge with the ones that built them (model.precision "
                        "auto is fp16 on a GPU and fp32 on a CPU: set it on every machine), or rebuild the shards")


def merged_rows(listed: Dataset, caches: list[FeatureCache], root: Path) -> tuple[dict[str, int], set[str]]:
    """guid -> row of the merged cache (kept labelled posts, then test posts, in listing order) and the
    skipped guids; a sentence unless the shards hold every listed post exactly once."""
    held = Counter(guid for cache in caches
                   for guid in [*cache.guids, *(item["guid"] for item in cache.manifest.skipped)])
    listed_guids = [sample.guid for sample in listed.samples]
    problems = {"missing": [g for g in listed_guids if not held[g]], "repeated": [g for g, k in held.items() if k > 1],
                "not listed": sorted(set(held) - set(listed_guids))}
    if any(problems.values()):
        shown = "; ".join(f"{what}: {', '.join(guids[:5])}{' …' if len(guids) > 5 else ''}"
                          for what, guids in problems.items() if guids)
        raise UserError(f"the shards in {root} do not hold every listed post exactly once ({shown}): rebuild them "
                        "with `python -m src.featurize --shard i/n --force` from the same data")
    skipped = {item["guid"] for cache in caches for item in cache.manifest.skipped}
    order = [s.guid for s in listed.labelled if s.guid not in skipped] + [s.guid for s in listed.test]
    return {guid: row for row, guid in enumerate(order)}, skipped


def token_axis(name: str, ndim: int) -> int | None:
    """The axis of the text tokens L in array ``name`` (layout in msc/features/manifest.py), or None."""
    if "text" not in name or name.endswith("pooled"):
        return None
    return ndim - 1 if name.endswith("mask") else ndim - 2


def merge_arrays(caches: list[FeatureCache], rows: dict[str, int], n_labelled: int, width: int,
                 staging: Path) -> dict[str, dict]:
    """Write every array of the shards' layout into ``staging``, each shard row at its merged row, texts
    trimmed to ``width`` tokens (beyond it a shard holds padding only); the arrays' records."""
    records = {}
    for name, record in caches[0].manifest.arrays.items():
        shape = [n_labelled if name.startswith("aug") else len(rows), *record["shape"][1:]]
        axis = token_axis(name, len(shape))
        if axis is not None:
            shape[axis] = width
        writer = NpyWriter(staging / f"{name}.npy", tuple(shape), record["dtype"], len(shape) - 1)
        for cache in caches:
            source = cache.array(name)  # (N_shard, ...) or, augmented, (N_lab_shard, ...): labelled rows first
            targets = [rows[guid] for guid in cache.guids[: len(source)]]
            for start in range(0, len(source), CHUNK):
                block = np.asarray(source[start : start + CHUNK])
                if axis is not None:
                    block = block[(slice(None),) * axis + (slice(0, width),)]
                for offset, row in enumerate(targets[start : start + CHUNK]):
                    writer.write(row, block[offset : offset + 1])
        writer.close()
        records[name] = array_record(writer.path)
    return records


def merged_manifest(data: DataConfig, model: ModelConfig, features: FeaturesConfig, listed: Dataset,
                    shards: list[ShardManifest], caches: list[FeatureCache], rows: dict[str, int], skipped: set[str],
                    arrays: dict[str, dict]) -> CacheManifest:
    """The manifest a one-process featurize writes for these rows (its fingerprint included)."""
    first = caches[0].manifest
    data_hash = data_fingerprint(listed, {guid: digest for shard in shards for guid, digest in shard.digests.items()})
    quality = {key: [-1.0] * len(rows) for key in first.image_quality}
    for cache in caches:
        for key, values in cache.manifest.image_quality.items():
            for guid, value in zip(cache.guids, values):
                quality[key][rows[guid]] = value

    def ordered(guids) -> list[str]:
        return sorted(guids, key=rows.__getitem__)

    fallbacks = {guid: how for cache in caches for guid, how in cache.manifest.text_fallbacks.items()}
    skips = {item["guid"]: item for cache in caches for item in cache.manifest.skipped}
    return CacheManifest(
        fingerprint=cache_fingerprint(data, model, features, data_hash, first.backbone_identity),
        data_fingerprint=data_hash, preprocessing=preprocessing_settings(data, model, features),
        backbone=model.backbone, backbone_identity=first.backbone_identity, dim=first.dim,
        n_labelled=len(rows) - len(listed.test), augment_views=first.augment_views,
        text_augment_views=first.text_augment_views, text_tokens=max(shard.text_width for shard in shards),
        image_tokens=first.image_tokens, settings=asdict(features), guids=list(rows),
        labels=[s.label for s in listed.labelled if s.guid not in skipped], label_set=list(listed.labels),
        skipped=[skips[s.guid] for s in listed.labelled if s.guid in skips],
        blank_text=ordered(guid for cache in caches for guid in cache.manifest.blank_text),
        blank_image=ordered(guid for cache in caches for guid in cache.manifest.blank_image),
        text_encodings=dict(sum((Counter(cache.manifest.text_encodings) for cache in caches), Counter())),
        image_quality=quality, text_fallbacks={guid: fallbacks[guid] for guid in ordered(fallbacks)},
        arrays=arrays, build_id=uuid.uuid4().hex)


def install(folder: Path, staging: Path, manifest: CacheManifest) -> None:
    """Replace the cache in ``folder`` by the arrays in ``staging``: the old manifest goes first (a reader
    then finds no cache, msc/features/cache.py), the arrays are renamed in, the old cache's others
    removed, the new manifest written last."""
    try:
        old = read_manifest(folder).arrays
    except UserError:  # no cache there yet, or an unreadable one: its arrays are not known
        old = {}
    (folder / MANIFEST).unlink(missing_ok=True)
    for name in manifest.arrays:
        (staging / f"{name}.npy").replace(folder / f"{name}.npy")
    for name in set(old) - set(manifest.arrays):
        (folder / f"{name}.npy").unlink(missing_ok=True)
    write_handoff(folder / MANIFEST, manifest, indent=None)
    staging.rmdir()


def merge_shards(data: DataConfig, model: ModelConfig, features: FeaturesConfig, params: str) -> tuple[FeatureCache, int]:
    """Check the shards in ``<features.dir>/shards/`` and write the one cache from them; the cache and n."""
    folder = Path(features.dir)
    root = folder / SHARDS
    listed = listed_posts(data)
    found = found_shards(root)
    caches = {shard_folder: FeatureCache(shard_folder) for shard_folder in found}  # each one checked whole
    identity = next(iter(caches.values())).manifest.backbone_identity
    check_shards(found, root, shard_fingerprint(data, model, features, listed, identity), params)
    rows, skipped = merged_rows(listed, list(caches.values()), root)
    with file_lock(cache_lock(folder)):  # featurize's: one writer of the cache at a time
        staging = folder / STAGING
        shutil.rmtree(staging, ignore_errors=True)  # what a killed merge left
        staging.mkdir(parents=True)
        width = max(shard.text_width for shard in found.values())
        arrays = merge_arrays(list(caches.values()), rows, len(rows) - len(listed.test), width, staging)
        install(folder, staging, merged_manifest(data, model, features, listed, list(found.values()),
                                                 list(caches.values()), rows, skipped, arrays))
    return FeatureCache(folder), len(found)
