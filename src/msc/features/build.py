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
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from msc.core.errors import UserError
from msc.core.files import file_lock
from msc.core.handoff import write_handoff
from msc.core.progress import Bars, progress_bars
from msc.data.config import DataConfig
from msc.data.dataset import listing_file, load_dataset
from msc.data.images import augment, open_image, sharpness, short_side
from msc.data.posts import Dataset
from msc.data.text import augment_text, is_fallback, read_post_text
from msc.features.cache import FeatureCache
from msc.features.config import FeaturesConfig
from msc.features.manifest import (
    MANIFEST,
    CacheManifest,
    array_record,
    cache_fingerprint,
    fresh_manifest,
    preprocessing_settings,
)
from msc.features.screen import Screening, data_fingerprint, report_screening, screen_samples
from msc.features.writer import NpyWriter
from msc.model.backbone import Backbone, clip_pixels
from msc.model.config import ModelConfig
from msc.model.onnx_towers import TOP_LAYERS_REFUSED, runtime_backbone
from msc.model.provenance import backbone_identity, identity_commit


class ImageViews(torch.utils.data.Dataset):
    """Items are (row, view): view 0 is the clean image, views >= 1 seeded augmentations.

    Runs in DataLoader workers, so image decoding overlaps the backbone's forward passes.
    """

    def __init__(self, dataset: Dataset, items: list[tuple[int, int]], image_processor, seed: int,
                 blank_rows: set[int]):
        self.samples = dataset.samples
        self.items = items
        self.image_processor = image_processor
        self.seed = seed
        self.blank_rows = blank_rows  # rows without a usable image (or, in a table, without one): a placeholder, zeroed later

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, int, np.ndarray, float, float]:
        """(row, view, pixels (3, H, W), short side, sharpness); the last two for clean views only (else -1)."""
        row, view = self.items[index]
        sample = self.samples[row]
        blank = row in self.blank_rows
        image = Image.new("RGB", (32, 32)) if blank else open_image(sample.image_path)
        side = blur = -1.0
        if view:
            # Seeded by (seed, guid, view): every rebuild gives the same augmented views.
            image = augment(image, random.Random(f"{self.seed}:{sample.guid}:{view}"))
        elif not blank:
            side, blur = float(short_side(sample.image_path)), sharpness(image)
        pixels = clip_pixels(self.image_processor, image)  # (3, H, W)
        return row, view, pixels, side, blur


def write_texts(backbone: Backbone, encoded: dict, blank: set[int], batch_size: int, writers: dict[str, NpyWriter],
                prefix: str, hidden_layers: int, progress: Bars, task) -> None:
    """Encode every row of ``encoded`` (ids and mask, (N, L')) into the ``<prefix>text_*`` writers,
    padded to their token length L, with the hidden states entering the last 1..``hidden_layers``
    blocks; rows in ``blank`` are written as a missing text (zeros)."""
    text_len = writers[f"{prefix}text_mask"].item_shape[-1]
    # Batches of similar length, each padded only to its own longest text: most tweets are far
    # shorter than the longest. CLIP's text encoder is causal, so padding never changes a real
    # token's state; the cache pads every row to L with zeros. A non-causal family (SigLIP) keeps
    # the fixed length it was trained with.
    by_length = np.argsort(encoded["attention_mask"].sum(1).numpy(), kind="stable")
    for start in range(0, len(by_length), batch_size):
        rows = by_length[start : start + batch_size]
        mask = encoded["attention_mask"][rows]
        length = int(mask.sum(1).max()) if backbone.causal_text else mask.shape[1]
        out = backbone.encode_text(encoded["input_ids"][rows, :length], mask[:, :length], hidden_layers)
        pad = (0, 0, 0, text_len - length)  # (b, length, W) -> (b, L, W), zeros after
        tokens = torch.nn.functional.pad(out.tokens.float().cpu(), pad)  # (b, L, P)
        hidden = [torch.nn.functional.pad(states.float().cpu(), pad) for states in out.hidden]  # (b, L, D_t) each
        mask = torch.nn.functional.pad(mask[:, :length], (0, text_len - length))  # (b, L)
        pooled = out.pooled.float().cpu()
        missing = [i for i, row in enumerate(rows) if row in blank]
        for values in (pooled, tokens, *hidden):
            values[missing] = 0.0  # a missing text looks like modality dropout
        named = {"text_pooled": pooled, "text_tokens": tokens, "text_mask": mask.bool(),
                 **{f"text_hidden{j}": states for j, states in enumerate(hidden, start=1)}}
        named = {name: values for name, values in named.items() if prefix + name in writers}  # token states: optional
        for i, row in enumerate(rows):
            for name, values in named.items():
                writers[prefix + name].write(row, values[i : i + 1].numpy())
        progress.advance(task, len(rows))


def read_texts(screening: Screening, blank_text: set[int], encoding: str) -> tuple[list[str], dict[str, str]]:
    """Every row's normalised text ("" for a blank one) and guid -> the codec it was read with."""
    texts, codecs = [], {}
    for row, sample in enumerate(screening.dataset.samples):
        text, codecs[sample.guid] = ("", "blank") if row in blank_text else read_post_text(sample, encoding)
        texts.append(text)
    return texts, codecs


def open_writers(folder: Path, n_total: int, n_labelled: int, views: int, text_views: int, text_len: int,
                 image_len: int, backbone: Backbone, hidden_layers: int, token_states: bool = True) -> dict[str, NpyWriter]:
    """One NpyWriter per array of the layout in msc/features/manifest.py (augmented ones only when
    their number of views is above 0, hidden states only for K = ``hidden_layers`` above 0, the token
    states ``*_tokens`` only with ``token_states``)."""
    dim, (text_width, image_width) = backbone.dim, backbone.hidden_widths
    hidden = [(f"{prefix}{name}{j}", shape, np.float16, len(shape) - lead)
              for j in range(1, hidden_layers + 1)
              for prefix, name, shape, lead in (
                  ("", "text_hidden", (n_total, text_len, text_width), 1),
                  ("", "image_hidden", (n_total, image_len, image_width), 1),
                  ("aug_", "image_hidden", (n_labelled, views, image_len, image_width), 2),
                  ("aug_", "text_hidden", (n_labelled, text_views, text_len, text_width), 2))]
    layout = hidden + [
        ("text_pooled", (n_total, dim), np.float16, 1),
        ("text_tokens", (n_total, text_len, dim), np.float16, 2),
        ("text_mask", (n_total, text_len), np.bool_, 1),
        ("image_pooled", (n_total, dim), np.float16, 1),
        ("image_tokens", (n_total, image_len, dim), np.float16, 2),
        ("aug_pooled", (n_labelled, views, dim), np.float16, 1),
        ("aug_tokens", (n_labelled, views, image_len, dim), np.float16, 2),
        ("aug_text_pooled", (n_labelled, text_views, dim), np.float16, 1),
        ("aug_text_tokens", (n_labelled, text_views, text_len, dim), np.float16, 2),
        ("aug_text_mask", (n_labelled, text_views, text_len), np.bool_, 1),
    ]
    return {name: NpyWriter(folder / f"{name}.npy", shape, dtype, item_ndim) for name, shape, dtype, item_ndim in layout
            if (not name.startswith("aug") or (text_views if name.startswith("aug_text") else views))
            and (token_states or not name.endswith("_tokens"))}


def write_images(backbone: Backbone, loader, blank_image: set[int], writers: dict[str, NpyWriter],
                 hidden_layers: int, quality: dict[str, list[float]], progress: Bars, task) -> None:
    """Encode the loader's (row, view) items, clean views first, into the image writers (with the
    hidden states entering the last 1..``hidden_layers`` blocks), and record each clean image's shorter
    side and sharpness in ``quality``."""
    for image_rows, view_ids, pixels, sides, blurs in loader:
        for row, view, side, blur in zip(image_rows.tolist(), view_ids.tolist(), sides.tolist(), blurs.tolist()):
            if view == 0:
                quality["short_side"][row], quality["sharpness"][row] = side, blur
        pooled, tokens, hidden = backbone.encode_image(pixels, hidden_layers)
        # (b, P), (b, M, P) and hidden[j - 1] (b, M, D_v); the clean and augmented arrays' names
        named = [("image_pooled", "aug_pooled", pooled), ("image_tokens", "aug_tokens", tokens),
                 *((f"image_hidden{j}", f"aug_image_hidden{j}", states) for j, states in enumerate(hidden, start=1))]
        missing = np.isin(image_rows.numpy(), list(blank_image))
        clean = (view_ids == 0).numpy()  # a batch may straddle the clean/augmented boundary
        for clean_name, augmented_name, values in named:
            if clean_name not in writers:  # image_tokens of a pooled-only cache
                continue
            values = values.float().cpu().numpy()
            values[missing] = 0.0
            if clean.any():
                writers[clean_name].append(values[clean])
            if not clean.all():
                writers[augmented_name].append(values[~clean])
        progress.advance(task, len(view_ids))


def build_cache(screening: Screening, backbone: Backbone, data: DataConfig, model: ModelConfig,
                features: FeaturesConfig, folder: Path, fingerprint: str, data_hash: str, identity: str) -> None:
    """Write every array of the cache into ``folder``, then its manifest (``identity``: the backbone's)."""
    settings = features
    dataset = screening.dataset
    samples = dataset.samples
    n_total, n_labelled, views = len(samples), len(dataset.labelled), settings.augment_views
    rows_of = {sample.guid: row for row, sample in enumerate(samples)}
    blank_text = {rows_of[guid] for guid in screening.blank_text}
    blank_image = {rows_of[guid] for guid in screening.blank_image}
    texts, codecs = read_texts(screening, blank_text, data.text_encoding)
    encoded = backbone.tokenize(texts, settings.max_text_tokens)  # padded to the longest: (N, L)
    text_len = encoded["input_ids"].shape[1]
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
        if text_views:
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


def featurize(data: DataConfig, model: ModelConfig, features: FeaturesConfig, force: bool = False) -> tuple[FeatureCache, bool]:
    """Return the cache for these sections of params.yaml, building it when stale. The bool says whether it was built."""
    folder = Path(features.dir)
    if model.runtime == "onnxruntime" and features.top_layers:
        raise UserError(TOP_LAYERS_REFUSED)
    dataset = load_dataset(data.source, require_test_files=False, require_labelled_files=False)
    if not dataset.labelled:  # nothing to train on: every stage after this one would fail on it
        raise UserError(f"{listing_file(data.source)} has no labelled samples; label some, or run "
                        "`python -m src.sample` for a synthetic dataset")
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
    with file_lock(folder.with_name(folder.name + ".lock")):
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
                   fingerprint: str, data_hash: str, identity: str) -> None:
    """Build into ``<dir>.tmp`` and swap it in for ``folder`` once complete; a hub id by its resolved commit,
    its towers run by ``model.runtime``."""
    backbone = runtime_backbone(model.backbone, identity_commit(identity) or model.revision, model.device,
                                model.precision, model.family, model.runtime, identity)
    if features.top_layers > backbone.blocks:
        raise UserError(f"features.top_layers is {features.top_layers}, but {model.backbone} "
                        f"has {backbone.blocks} blocks in its shallower tower; set it to {backbone.blocks} or fewer")
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)  # what a killed run left behind
    staging.mkdir(parents=True)
    try:
        build_cache(screening, backbone, data, model, features, staging, fingerprint, data_hash, identity)
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
