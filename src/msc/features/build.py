"""Building the feature cache: run the frozen backbone once over every sample.

The cache is keyed by a fingerprint of everything that changes its content: the backbone (its folder's
files, or the commit its hub revision names), every data file, the preprocessing settings, the precision the backbone
runs in, the preprocessing code itself (``PREPROCESSING_CODE``) and libraries. A fresh cache is reused; a stale
one is rebuilt in ``<dir>.tmp`` and swapped in once complete: a killed run never leaves a half-written cache.
"""

from __future__ import annotations

import errno
import random
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

from msc.core.errors import UserError
from msc.core.files import file_lock
from msc.core.handoff import write_handoff
from msc.core.progress import progress_bars
from msc.data.config import DataConfig
from msc.data.dataset import listing_file, load_dataset
from msc.data.posts import Dataset
from msc.data.text import augment_text, is_fallback, read_post_text
from msc.features.cache import FeatureCache, cache_lock
from msc.features.config import FeaturesConfig
from msc.features.encode import ImageViews, open_writers, write_images, write_texts
from msc.features.manifest import (
    MANIFEST,
    CacheManifest,
    array_record,
    cache_fingerprint,
    fresh_manifest,
    preprocessing_settings,
)
from msc.features.screen import Screening, data_fingerprint, report_screening, screen_samples
from msc.model.backbone import Backbone
from msc.model.config import ModelConfig
from msc.model.onnx_towers import TOP_LAYERS_REFUSED, runtime_backbone
from msc.model.provenance import backbone_identity, identity_commit


def read_texts(screening: Screening, blank_text: set[int], encoding: str) -> tuple[list[str], dict[str, str]]:
    """Every row's normalised text ("" for a blank one) and guid -> the codec it was read with."""
    texts, codecs = [], {}
    for row, sample in enumerate(screening.dataset.samples):
        text, codecs[sample.guid] = ("", "blank") if row in blank_text else read_post_text(sample, encoding)
        texts.append(text)
    return texts, codecs


def build_cache(screening: Screening, backbone: Backbone, data: DataConfig, model: ModelConfig,
                features: FeaturesConfig, folder: Path, fingerprint: str, data_hash: str, identity: str,
                text_tokens: int | None = None) -> int:
    """Write every array of the cache into ``folder``, then its manifest (``identity``: the backbone's);
    texts padded to ``text_tokens`` (a shard's fixed length), by default to the longest text. Returns
    the texts' tokenized width: the longest text's tokens, or a non-causal family's fixed length."""
    settings = features
    dataset = screening.dataset
    samples = dataset.samples
    n_total, n_labelled, views = len(samples), len(dataset.labelled), settings.augment_views
    rows_of = {sample.guid: row for row, sample in enumerate(samples)}
    blank_text = {rows_of[guid] for guid in screening.blank_text}
    blank_image = {rows_of[guid] for guid in screening.blank_image}
    texts, codecs = read_texts(screening, blank_text, data.text_encoding)
    encoded = backbone.tokenize(texts, settings.max_text_tokens)  # padded to the longest: (N, L)
    width = encoded["input_ids"].shape[1]
    text_len = max(text_tokens or 0, width)
    # Labelled row r's augmented texts 1..K, in C order; seeded by (seed, guid, view) like the images.
    text_views = settings.text_augment_views
    augmented_texts = [augment_text(texts[row], random.Random(f"{settings.seed}:{samples[row].guid}:text:{view}"))
                       for row in range(n_labelled) for view in range(1, text_views + 1)]
    image_len = backbone.image_tokens  # M: CLIP's patches and CLS, SigLIP's patches
    hidden_layers = settings.top_layers  # K
    writers = open_writers(folder, n_total, n_labelled, views, text_views, text_len, image_len, backbone, hidden_layers,
                           settings.token_states)
    # Item order is the arrays' C order: every clean image, then labelled row r's views 1..K.
    items = [(row, 0) for row in range(n_total)] + [(row, v) for row in range(n_labelled) for v in range(1, views + 1)]
    loader = torch.utils.data.DataLoader(
        ImageViews(dataset, items, backbone.processor.image_processor, settings.seed, blank_image),
        batch_size=settings.batch_size, num_workers=settings.num_workers, pin_memory=backbone.device.type == "cuda")
    # Per sample, for the error analysis's low-quality kind: the image file's shorter side in pixels
    # and its sharpness (variance of the Laplacian); -1 for a test sample without a usable image.
    quality = {"short_side": [-1.0] * n_total, "sharpness": [-1.0] * n_total}
    with progress_bars() as progress, torch.inference_mode():
        task = progress.add_task("texts", total=n_total)
        write_texts(backbone, encoded, blank_text, settings.batch_size, writers, "", hidden_layers, progress, task)
        if augmented_texts:  # none in a shard without labelled posts
            task = progress.add_task(f"augmented texts ({n_labelled}x{text_views})", total=len(augmented_texts))
            augmented = backbone.tokenize(augmented_texts, text_len)  # never longer than the clean texts: (N_lab*K, <=L)
            write_texts(backbone, augmented, set(), settings.batch_size, writers, "aug_", hidden_layers, progress, task)
        task = progress.add_task(f"images ({n_total} clean + {n_labelled}x{views} augmented)", total=len(items))
        write_images(backbone, loader, blank_image, writers, hidden_layers, quality, progress, task)
    for writer in writers.values():
        writer.close()
    write_handoff(folder / MANIFEST, CacheManifest(
        fingerprint=fingerprint, data_fingerprint=data_hash, preprocessing=preprocessing_settings(data, model, features),
        backbone=backbone.name, backbone_identity=identity, dim=backbone.dim, n_labelled=n_labelled, augment_views=views,
        text_augment_views=text_views, text_tokens=text_len, image_tokens=image_len, settings=asdict(settings),
        guids=[s.guid for s in samples], labels=[s.label for s in dataset.labelled], label_set=list(dataset.labels),
        skipped=screening.skipped, blank_text=screening.blank_text, blank_image=screening.blank_image,
        text_encodings=dict(Counter(codecs.values())), image_quality=quality,
        # Texts read as a fallback codec or with replaced characters: the ones to look at.
        text_fallbacks={guid: how for guid, how in codecs.items() if is_fallback(how)},
        arrays={name: array_record(writer.path) for name, writer in writers.items()}, build_id=uuid.uuid4().hex,
    ), indent=None)
    return width


def listed_posts(data: DataConfig) -> Dataset:
    """Every post the data lists, with no sample file read; a sentence when none is labelled."""
    dataset = load_dataset(data.source, require_test_files=False, require_labelled_files=False)
    if not dataset.labelled:  # nothing to train on: every stage after this one would fail on it
        raise UserError(f"{listing_file(data.source)} has no labelled samples; label some, or run "
                        "`python -m src.sample` for a synthetic dataset")
    return dataset


def featurize(data: DataConfig, model: ModelConfig, features: FeaturesConfig, force: bool = False) -> tuple[FeatureCache, bool]:
    """Return the cache for these sections of params.yaml, building it when stale. The bool says whether it was built."""
    folder = Path(features.dir)
    dataset = listed_posts(data)
    # Every file is checked before any work: a bad one stops the run here (on_error: error).
    screening = screen_samples(dataset, data.on_error)
    data_hash = data_fingerprint(dataset)
    identity = backbone_identity(model.backbone, model.revision)  # a moved hub `main` is stale
    fingerprint = cache_fingerprint(data, model, features, data_hash, identity)
    settings = preprocessing_settings(data, model, features)
    manifest = fresh_manifest(folder, fingerprint, say_why=False)  # said below, under the lock
    if not force and manifest is not None and manifest.fingerprint == fingerprint and manifest.preprocessing == settings:
        return FeatureCache(folder), False
    # One builder at a time: a second featurize waits, then finds the cache fresh.
    with file_lock(cache_lock(folder)):
        manifest = fresh_manifest(folder, fingerprint)
        if force or manifest is None or manifest.fingerprint != fingerprint:
            if manifest is not None and manifest.backbone_identity != identity:
                print(f"rebuilding the feature cache: the backbone is now {identity}, and the cache holds the "
                      f"features of {manifest.backbone_identity}", file=sys.stderr)
            report_screening(screening)
            build_and_swap(screening, data, model, features, folder, fingerprint, data_hash, identity)
            return FeatureCache(folder), True
        # The same values under equivalent settings (model.precision auto and fp32 on a CPU, the
        # data moved): record the settings that the reading stages compare with their config.
        write_handoff(folder / MANIFEST, replace(manifest, preprocessing=settings), indent=None)
    return FeatureCache(folder), False


def build_and_swap(screening: Screening, data: DataConfig, model: ModelConfig, features: FeaturesConfig, folder: Path,
                   fingerprint: str, data_hash: str, identity: str, text_tokens: int | None = None,
                   finish: Callable[[Path, int], None] | None = None) -> None:
    """Build into ``<dir>.tmp`` and swap it in for ``folder`` once complete; a hub id by its resolved commit,
    its towers run by ``model.runtime``. ``finish(staging, text width)`` adds to the build before the swap
    (a shard's manifest)."""
    if model.runtime == "onnxruntime" and features.top_layers:  # before the towers are exported: minutes on a real CLIP
        raise UserError(TOP_LAYERS_REFUSED)
    backbone = runtime_backbone(model.backbone, identity_commit(identity) or model.revision, model.device,
                                model.precision, model.family, model.runtime, identity)
    if features.top_layers > backbone.blocks:
        raise UserError(f"features.top_layers is {features.top_layers}, but {model.backbone} "
                        f"has {backbone.blocks} blocks in its shallower tower; set it to {backbone.blocks} or fewer")
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)  # what a killed run left behind
    staging.mkdir(parents=True)
    try:
        width = build_cache(screening, backbone, data, model, features, staging, fingerprint, data_hash, identity,
                            text_tokens)
        if finish is not None:
            finish(staging, width)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)  # a failed build must not keep its disk space (or a full disk full)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise UserError(f"no space left on the device holding '{staging}' while featurize wrote the cache; it "
                            "removed what it had written. Free some space, or point features.dir at a larger "
                            "disk, and run featurize again") from None
        raise
    # Swap: the old cache is moved aside before the new one takes its name. A kill between the
    # two renames leaves no cache at all, which the next run rebuilds; never a partial one.
    retired = folder.with_name(folder.name + ".old")
    shutil.rmtree(retired, ignore_errors=True)
    if folder.exists():
        folder.rename(retired)
    staging.rename(folder)
    shutil.rmtree(retired, ignore_errors=True)
