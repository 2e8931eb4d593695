"""Reading the feature cache that msc/features/build.py writes; its layout is in msc/features/manifest.py."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from msc.core.errors import UserError
from msc.core.files import held
from msc.data.config import DataConfig
from msc.features.config import FeaturesConfig
from msc.features.manifest import CacheManifest, check_arrays, check_settings, read_manifest
from msc.model.batch import FeatureBatch
from msc.model.config import ModelConfig
from msc.model.devices import resolve_device


def cache_lock(folder: Path) -> Path:
    """The lock that featurize, a shard's build and the merge hold while they write or swap the cache in
    ``folder``: one writer at a time, and a reader that finds no cache retries only while it is held."""
    return folder.with_name(folder.name + ".lock")


class FeatureCache:
    """Memory-mapped view of a complete cache folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest, self._arrays = self.open_whole()
        self.guids: list[str] = self.manifest.guids
        self.n_labelled: int = self.manifest.n_labelled
        self.augment_views: int = self.manifest.augment_views
        self.text_augment_views: int = self.manifest.text_augment_views
        self.dim: int = self.manifest.dim
        self.fingerprint: str = self.manifest.fingerprint
        self.top_layers: int = self.manifest.settings.get("top_layers", 0)  # K: hidden states cached per tower
        self.token_states: bool = "text_tokens" in self.manifest.arrays  # False: pooled-only (features.token_states)
        self.label_names: tuple[str, ...] = tuple(self.manifest.label_set)  # class order
        self.labels = np.array([self.label_names.index(y) for y in self.manifest.labels], dtype=np.int64)  # (N_lab,)
        self.device = torch.device("cpu")
        self._resident: dict[str, torch.Tensor] | None = None  # every array on self.device, after to()

    def open_whole(self, attempts: int = 5) -> tuple[CacheManifest, dict[str, np.ndarray]]:
        """The manifest and every array it lists, memory-mapped at once, all of one build.

        ``featurize --force`` may swap a rebuilt cache in while this opens: the arrays are mapped
        between two reads of the manifest and kept only when both name the same build (its
        ``build_id``, new for every build). Between the swap's two renames, and while the merge of shards
        renames its arrays in, there is no manifest for a moment, under the writers' ``cache_lock``: the
        open is tried again while that is held (no cache and no writer: the sentence at once). A mapped
        array stays readable after the swap deletes its file, so a reader never mixes two builds. A
        damaged array is a sentence here, not a crash later."""
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                manifest = read_manifest(self.folder)
            except UserError:
                if held(cache_lock(self.folder)) and not last:
                    time.sleep(0.2)
                    continue
                # No writer at work now: a swap that hid the manifest is over, so this read settles it (a
                # writer holds the lock through a whole build before it swaps). No cache: the hand-off's sentence.
                manifest = read_manifest(self.folder)
            try:
                arrays = {name: np.load(self.folder / f"{name}.npy", mmap_mode="r") for name in manifest.arrays}
            except (OSError, ValueError):
                check_arrays(self.folder, manifest)  # damaged files: their sentence; else swapped meanwhile
                time.sleep(0.2)
                continue
            try:
                same_build = read_manifest(self.folder).build_id == manifest.build_id
            except UserError:
                same_build = False
            if same_build:
                check_arrays(self.folder, manifest, arrays)  # the arrays as mapped, whatever the paths hold now
                return manifest, arrays
        raise UserError(f"the feature cache '{self.folder}' was rebuilt {attempts} times while it was being opened; "
                        "run this command again once featurize has finished")

    def array(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def to(self, device: torch.device) -> FeatureCache:
        """Copy the feature arrays to ``device`` once, in the cache's dtype (fp16: the full real cache is
        about 0.65 GB), so that batches are sliced there with no host-to-device copy per batch.
        Without it, batches are read from the memory-mapped files. The hidden states of
        ``features.top_layers`` (about 2 GB per block on the full data with 4 views) stay mapped and
        are copied per batch: only a run with trainable top layers reads them."""
        names = [name for name in sorted(self._arrays) if "_hidden" not in name]
        self._resident = {name: torch.from_numpy(np.ascontiguousarray(self.array(name))).to(device) for name in names}
        self.device = torch.device(device)
        return self

    def take(self, name: str, *index) -> torch.Tensor:
        """``array(name)[index]`` as a tensor on ``self.device``, in the stored dtype."""
        if self._resident is None or name not in self._resident:
            # fancy indexing copies out of the memmap
            return torch.from_numpy(self.array(name)[index]).to(self.device)
        return self._resident[name][tuple(torch.from_numpy(i).to(self.device) if isinstance(i, np.ndarray) else i
                                          for i in index)]

    def require_token_states(self, what: str) -> None:
        """Stop with a sentence when this cache is pooled-only and ``what`` needs the token states."""
        if not self.token_states:
            raise UserError(f"{what} needs the token states, and the feature cache '{self.folder}' has none "
                            "(features.token_states: false); use the late, gated, text or image head, or set "
                            "features.token_states: true and run `python -m src.featurize`")

    def batch(self, rows: np.ndarray, views: np.ndarray | None = None, tokens: bool = False,
              text_views: np.ndarray | None = None, hidden_layers: int = 0) -> FeatureBatch:
        """Features of ``rows`` as float32 tensors on ``self.device``; with ``hidden_layers`` k > 0,
        also the hidden states entering each tower's last k blocks, and the text mask.

        ``views[i]`` picks the image view of row i and ``text_views[i]`` its text view: 0 = clean,
        k >= 1 = augmented view k (labelled rows only).
        """
        assert not (tokens and hidden_layers), "the top layers compute the token features: ask for one or the other"
        rows = np.asarray(rows)

        def viewed(name: str, aug_name: str, chosen: np.ndarray | None, *index) -> torch.Tensor:
            values = self.take(name, rows, *index)  # a copy: replacing rows below leaves the cache alone
            augmented = None if chosen is None else np.flatnonzero(np.asarray(chosen) > 0)
            if augmented is not None and len(augmented):
                values[torch.from_numpy(augmented).to(self.device)] = self.take(
                    aug_name, rows[augmented], np.asarray(chosen)[augmented] - 1, *index)
            return values

        batch = FeatureBatch(text_pooled=viewed("text_pooled", "aug_text_pooled", text_views).float(),
                             image_pooled=viewed("image_pooled", "aug_pooled", views).float())
        if tokens:
            self.require_token_states("a token head (early, cross_attention)")
            # Trimmed to the batch's longest text: the cache pads every row to the longest text of
            # the whole dataset, and the token heads' cost grows with sequence length. Exact:
            # padding is masked out of every attention and mean. (B, L_batch, P)
            mask = viewed("text_mask", "aug_text_mask", text_views)  # (B, L) bool, True on a prefix of each row
            length = max(int(mask.any(0).nonzero().max()) + 1 if mask.any() else 1, 1)
            batch.text_tokens = viewed("text_tokens", "aug_text_tokens", text_views, slice(None, length)).float()
            batch.text_mask = mask[:, :length]
            batch.image_tokens = viewed("image_tokens", "aug_tokens", views).float()
        if hidden_layers:
            # Full length L: a causal text tower trims to the batch's longest itself, SigLIP's cannot.
            k = hidden_layers
            batch.text_mask = viewed("text_mask", "aug_text_mask", text_views)  # (B, L)
            batch.text_hidden = viewed(f"text_hidden{k}", f"aug_text_hidden{k}", text_views).float()  # (B, L, D_t)
            batch.image_hidden = viewed(f"image_hidden{k}", f"aug_image_hidden{k}", views).float()  # (B, M, D_v)
        return batch


def open_cache(data: DataConfig, model: ModelConfig, features: FeaturesConfig, device: str = "auto") -> FeatureCache:
    """The cache that ``featurize`` wrote for these sections, on ``device`` (train.device); a sentence when it
    is missing or stale."""
    cache = FeatureCache(features.dir)
    check_settings(cache.manifest, data, model, features, cache.folder)
    device = resolve_device(device, "train.device")
    return cache.to(device) if device.type == "cuda" else cache  # on the CPU, the memory map is already there
