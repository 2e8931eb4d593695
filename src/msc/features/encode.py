"""Encoding posts with the frozen backbone into the cache's arrays (layout in msc/features/manifest.py):
the image views a DataLoader reads, the text and image encoders' writes, one NpyWriter per array."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from msc.core.progress import Bars
from msc.data.images import augment, open_image, sharpness, short_side
from msc.data.posts import Dataset
from msc.features.writer import NpyWriter
from msc.model.backbone import Backbone, clip_pixels


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
        if backbone.causal_text:  # a padding token's state depends on its batch: zeros, as after the batch's longest
            for values in (tokens, *hidden):
                values[~mask.bool()] = 0.0
        named = {"text_pooled": pooled, "text_tokens": tokens, "text_mask": mask.bool(),
                 **{f"text_hidden{j}": states for j, states in enumerate(hidden, start=1)}}
        named = {name: values for name, values in named.items() if prefix + name in writers}  # token states: optional
        for i, row in enumerate(rows):
            for name, values in named.items():
                writers[prefix + name].write(row, values[i : i + 1].numpy())
        progress.advance(task, len(rows))


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
