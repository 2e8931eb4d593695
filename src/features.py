"""Reading the feature cache that ``src.featurize`` writes.

Folder layout (every array float16 unless noted; N = labelled + test rows in Dataset order,
N_lab = labelled rows, K = augment_views, L = text tokens, M = 1 + image patches, P = joint width):

    manifest.json       fingerprint, shapes, guids and labels; written last, so its presence
                        means the arrays are complete
    text_pooled.npy     (N, P)         projected pooled text embedding
    text_tokens.npy     (N, L, P)      projected per-token text states
    text_mask.npy       (N, L) bool    True where a token is real, False for padding
    image_pooled.npy    (N, P)         projected pooled image embedding, clean view
    image_tokens.npy    (N, M, P)      projected per-patch states (CLS first), clean view
    aug_pooled.npy      (N_lab, K, P)     the same for K augmented views of labelled images
    aug_tokens.npy      (N_lab, K, M, P)
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from src import LABELS
from src.config import Config
from src.errors import UserError

MANIFEST = "manifest.json"
# The code that decides the cached values: decoding, tweet normalisation, image preprocessing and
# augmentation, the backbone's forward. Its hash is part of the cache's identity, so a change to it
# rebuilds the cache without anybody bumping a version number.
PREPROCESSING_CODE = ("featurize.py", "images.py", "backbone.py", "data.py")


@functools.lru_cache(maxsize=1)
def preprocessing_code_hash() -> str:
    """Hash of the preprocessing code as this process loaded it (read once: an edit made while a
    long run goes on does not change what the run computes)."""
    digest = hashlib.sha256()
    for name in PREPROCESSING_CODE:
        digest.update(name.encode() + b"\0" + (Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


def preprocessing_settings(config: Config) -> dict[str, object]:
    """What the config says the cache must have been built with, by params.yaml key.

    Recorded in the manifest; stages that read the cache compare it with their own config
    (``check_cache``), which needs no pass over the data files. Data content and backbone weights
    are the featurize fingerprint's and DVC's to track.
    """
    return {
        "data.root": config.data.root,
        "data.text_encoding": config.data.text_encoding,
        "model.backbone": config.model.backbone,
        "model.revision": config.model.revision,
        "model.precision": config.model.precision,
        "features.augment_views": config.features.augment_views,
        "features.text_augment_views": config.features.text_augment_views,
        "features.max_text_tokens": config.features.max_text_tokens,
        "features.seed": config.features.seed,
        "preprocessing code": preprocessing_code_hash(),
    }


@dataclass
class FeatureBatch:
    """What a fusion head reads. Token fields are None for heads that only use pooled features."""

    text_pooled: torch.Tensor  # (B, P)
    image_pooled: torch.Tensor  # (B, P)
    text_tokens: torch.Tensor | None = None  # (B, L, P)
    text_mask: torch.Tensor | None = None  # (B, L) bool, True = real token
    image_tokens: torch.Tensor | None = None  # (B, M, P)


class FeatureCache:
    """Memory-mapped view of a complete cache folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST
        if not manifest_path.is_file():
            raise UserError(
                f"no complete feature cache in '{self.folder}' (no {MANIFEST}); run `python -m src.featurize` "
                "or `dvc repro featurize` first"
            )
        self.manifest = json.loads(manifest_path.read_text())
        self.guids: list[str] = self.manifest["guids"]
        self.n_labelled: int = self.manifest["n_labelled"]
        self.augment_views: int = self.manifest["augment_views"]
        self.text_augment_views: int = self.manifest.get("text_augment_views", 0)
        self.dim: int = self.manifest["dim"]
        self.fingerprint: str = self.manifest["fingerprint"]
        self.labels = np.array([LABELS.index(y) for y in self.manifest["labels"]], dtype=np.int64)  # (N_lab,)
        self._arrays: dict[str, np.ndarray] = {}
        self.device = torch.device("cpu")
        self._resident: dict[str, torch.Tensor] | None = None  # every array on self.device, after to()

    def array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = np.load(self.folder / f"{name}.npy", mmap_mode="r")
        return self._arrays[name]

    def to(self, device: torch.device) -> FeatureCache:
        """Copy every array to ``device`` once, in the cache's dtype (fp16: the full real cache is
        about 0.65 GB), so that batches are sliced there with no host-to-device copy per batch.
        Without it, batches are read from the memory-mapped files."""
        names = [path.stem for path in sorted(self.folder.glob("*.npy"))]
        self._resident = {name: torch.from_numpy(np.ascontiguousarray(self.array(name))).to(device) for name in names}
        self.device = torch.device(device)
        return self

    def take(self, name: str, *index) -> torch.Tensor:
        """``array(name)[index]`` as a tensor on ``self.device``, in the stored dtype."""
        if self._resident is None:
            return torch.from_numpy(self.array(name)[index])  # fancy indexing copies out of the memmap
        return self._resident[name][tuple(torch.from_numpy(i).to(self.device) if isinstance(i, np.ndarray) else i
                                          for i in index)]

    def batch(self, rows: np.ndarray, views: np.ndarray | None = None, tokens: bool = False,
              text_views: np.ndarray | None = None) -> FeatureBatch:
        """Features of ``rows`` as float32 tensors on ``self.device``.

        ``views[i]`` picks the image view of row i and ``text_views[i]`` its text view: 0 = clean,
        k >= 1 = augmented view k (labelled rows only).
        """
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
            # Trimmed to the batch's longest text: the cache pads every row to the longest text of
            # the whole dataset, and the token heads' cost grows with sequence length. Exact:
            # padding is masked out of every attention and mean. (B, L_batch, P)
            mask = viewed("text_mask", "aug_text_mask", text_views)  # (B, L) bool, True on a prefix of each row
            length = max(int(mask.any(0).nonzero().max()) + 1 if mask.any() else 1, 1)
            batch.text_tokens = viewed("text_tokens", "aug_text_tokens", text_views, slice(None, length)).float()
            batch.text_mask = mask[:, :length]
            batch.image_tokens = viewed("image_tokens", "aug_tokens", views).float()
        return batch


def open_cache(config: Config) -> FeatureCache:
    """The cache that ``featurize`` wrote for ``config``; a sentence when it is missing or stale."""
    cache = FeatureCache(config.features.dir)
    built_with = cache.manifest.get("preprocessing", {})
    changed = [key for key, value in preprocessing_settings(config).items() if built_with.get(key) != value]
    if changed:
        code = [f"src/{name}" for name in PREPROCESSING_CODE]
        named = [f"the preprocessing code ({', '.join(code)})" if key == "preprocessing code" else key for key in changed]
        raise UserError(f"the feature cache '{cache.folder}' is stale: {', '.join(named)} changed since it was built; "
                        "run `python -m src.featurize` (or `dvc repro featurize`)")
    from src.backbone import resolve_device

    device = resolve_device(config.train.device, "train.device")
    return cache.to(device) if device.type == "cuda" else cache  # on the CPU, the memory map is already there


def drop_modality(batch: FeatureBatch, text_rows: np.ndarray, image_rows: np.ndarray) -> FeatureBatch:
    """Zero the text features of ``text_rows`` and the image features of ``image_rows``, in place.

    This is how a missing modality looks to a head, in training (modality dropout) and in
    prediction (an unreadable or missing file): all zeros, with the text mask unchanged.
    """
    for rows, fields in ((text_rows, ("text_pooled", "text_tokens")), (image_rows, ("image_pooled", "image_tokens"))):
        if len(rows):
            for name in fields:
                values = getattr(batch, name)
                if values is not None:
                    values[rows] = 0.0
    return batch
