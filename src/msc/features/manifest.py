"""The feature cache's manifest: its one schema, and what a config says the cache must have been built with.

Folder layout (every array float16 unless noted; N = labelled + test rows in Dataset order,
N_lab = labelled rows, K = augment_views, K_t = text_augment_views, L = text tokens, M = 1 + image
patches, P = joint width):

    manifest.json       CacheManifest; written last, so its presence means the arrays are complete
    text_pooled.npy     (N, P)            projected pooled text embedding
    text_tokens.npy     (N, L, P)         projected per-token text states
    text_mask.npy       (N, L) bool       True where a token is real, False for padding
    image_pooled.npy    (N, P)            projected pooled image embedding, clean view
    image_tokens.npy    (N, M, P)         projected per-patch states (CLS first), clean view
    aug_pooled.npy      (N_lab, K, P)     the same for K augmented views of labelled images
    aug_tokens.npy      (N_lab, K, M, P)
    aug_text_pooled.npy (N_lab, K_t, P)   and for K_t augmented texts of labelled tweets
    aug_text_tokens.npy (N_lab, K_t, L, P)
    aug_text_mask.npy   (N_lab, K_t, L) bool

With features.top_layers: T above 0 (msc/model/top_layers.py), for j = 1..T, the hidden states
entering each tower's last j blocks (D_t, D_v: the towers' widths; masked by the text masks):

    text_hidden{j}.npy       (N, L, D_t)
    image_hidden{j}.npy      (N, M, D_v)
    aug_image_hidden{j}.npy  (N_lab, K, M, D_v)
    aug_text_hidden{j}.npy   (N_lab, K_t, L, D_t)

The augmented arrays exist only when their K is above 0.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from msc.core.errors import UserError
from msc.core.handoff import HandOff, read_handoff
from msc.data.config import DataConfig
from msc.features.config import FeaturesConfig
from msc.model.config import ModelConfig
from msc.model.devices import resolve_device, resolve_dtype
from msc.model.provenance import backbone_identity

MANIFEST = "manifest.json"
MSC_ROOT = Path(__file__).resolve().parents[1]
# The code that decides the cached values: screening, decoding, tweet normalisation, image
# preprocessing and augmentation, the backbone's forward, the writing. Its hash is part of the
# cache's identity, so a change to it rebuilds the cache without anybody bumping a version number.
PREPROCESSING_CODE = ("features/build.py", "features/encode.py", "features/screen.py", "features/writer.py",
                      "data/dataset.py", "data/posts.py", "data/table.py", "data/text.py", "data/images.py",
                      "model/backbone.py")
# The code that exports the towers and runs them with model.runtime: onnxruntime: part of those caches' identity.
ONNX_RUNTIME_CODE = ("model/onnx_export.py", "model/onnx_towers.py")


@dataclass(frozen=True)
class CacheManifest(HandOff):
    """``manifest.json``: what the arrays beside it hold and what made them."""

    NAME: ClassVar[str] = "cache-manifest"
    VERSION: ClassVar[int] = 4  # 2: arrays; 3: label_set; 4: backbone_identity
    WHAT: ClassVar[str] = "feature cache manifest"
    WRITTEN_BY: ClassVar[str] = "`python -m src.featurize` (or `dvc repro featurize`)"

    fingerprint: str  # sha256 of everything that decides the values (cache_fingerprint)
    build_id: str  # new for every build, even of the same fingerprint: readers tell two builds apart by it
    data_fingerprint: str  # sha256 of the label files and every listed sample's bytes
    preprocessing: dict  # preprocessing_settings() at build time: what readers compare with their config
    backbone: str  # model.backbone as written
    backbone_identity: str  # hub:<id>@<commit> or folder:<sha256> (msc/model/provenance.py): what was loaded
    dim: int  # P
    n_labelled: int  # N_lab: the first rows are the labelled samples, in train.txt order
    augment_views: int  # K
    text_augment_views: int  # K_t
    text_tokens: int  # L
    image_tokens: int  # M
    settings: dict  # the features section it was built with
    guids: list  # (N,) row order
    labels: list  # (N_lab,) label names
    label_set: list  # the dataset's label set, in class order: labels[i] is class label_set.index(labels[i])
    skipped: list  # labelled samples dropped under data.on_error: skip: {guid, reason}
    blank_text: list  # test guids whose text is cached as missing (zeros)
    blank_image: list  # test guids whose image is cached as missing (zeros)
    text_encodings: dict  # codec -> texts read with it
    image_quality: dict  # short_side and sharpness per row; -1 where no image
    text_fallbacks: dict  # guid -> codec, for texts read as cp1252 or with replaced characters
    arrays: dict  # array name -> {"shape", "dtype", "bytes"} as written: what opening the cache checks


def array_record(path: Path) -> dict:
    """What the manifest records of one written array: shape, dtype and file size."""
    array = np.load(path, mmap_mode="r")
    return {"shape": list(array.shape), "dtype": str(array.dtype), "bytes": path.stat().st_size}


def all_finite(array: np.ndarray) -> bool:
    """Whether a (memory-mapped) array holds no NaN or infinity, read in chunks of about 64 MB."""
    if array.dtype.kind != "f" or array.size == 0:
        return True
    flat = array.reshape(-1)
    step = max(1, (64 << 20) // array.dtype.itemsize)
    return all(np.isfinite(flat[start : start + step]).all() for start in range(0, flat.size, step))


def array_problem(path: Path, record: dict, array: np.ndarray | None = None) -> str | None:
    """What is wrong with one array of the cache against its record, or None; ``array``: the file as a
    reader already mapped it (then that is what is checked, whatever happened to the path since)."""
    if array is None:
        if not path.is_file():
            return "is missing"
        if path.stat().st_size != record["bytes"]:
            return f"is {path.stat().st_size:,} bytes where featurize wrote {record['bytes']:,}"
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as error:
            return f"cannot be read as an array ({error})"
    if list(array.shape) != record["shape"] or str(array.dtype) != record["dtype"]:
        return f"holds a {array.dtype} array of shape {list(array.shape)} where featurize wrote {record['dtype']} " \
               f"{record['shape']}"
    if not all_finite(array):
        return "holds NaN or infinite values"
    return None


# (build id, each array's mtime and size) of the caches this process has read whole and found intact:
# featurize and the FeatureCache it returns, or several opens in one process, scan a cache once.
INTACT: set[tuple] = set()


def damage(folder: Path, manifest: CacheManifest, arrays: dict[str, np.ndarray] | None = None) -> str | None:
    """What is wrong with the cache in ``folder`` against its manifest ("<file> is missing"), or None:
    an array missing, truncated, reshaped, or overwritten with non-finite values (every byte is read,
    once per process for files that have not changed since). ``arrays``: as a reader mapped them."""
    try:
        key = (manifest.build_id, *((name, (folder / f"{name}.npy").stat().st_mtime_ns,
                                     (folder / f"{name}.npy").stat().st_size) for name in manifest.arrays))
    except OSError:
        key = None  # a file is gone: checked below
    if key is not None and key in INTACT:
        return None
    for name, record in manifest.arrays.items():
        path = folder / f"{name}.npy"
        if (problem := array_problem(path, record, None if arrays is None else arrays[name])) is not None:
            return f"{path} {problem}"
    if key is not None:
        INTACT.add(key)
    return None


def check_arrays(folder: Path, manifest: CacheManifest, arrays: dict[str, np.ndarray] | None = None) -> None:
    """Stop with a sentence naming the fix when the cache in ``folder`` is damaged (``damage``)."""
    if (problem := damage(folder, manifest, arrays)) is not None:
        raise UserError(f"{problem}: the feature cache was damaged after featurize wrote it; rebuild it with "
                        "`python -m src.featurize --force` (or `dvc repro --force featurize`)")


def read_manifest(folder: str | Path) -> CacheManifest:
    """The manifest of the cache in ``folder``; a sentence when there is none or it cannot be read."""
    return read_handoff(CacheManifest, Path(folder) / MANIFEST)


def fresh_manifest(folder: Path, fingerprint: str, say_why: bool = True) -> CacheManifest | None:
    """The manifest of the complete cache in ``folder``, or None (then it is rebuilt). One of
    ``fingerprint`` is also checked whole (``damage``): a damaged one is rebuilt, saying why."""
    try:
        manifest = read_manifest(folder)
    except UserError:
        return None
    if manifest.fingerprint == fingerprint and (problem := damage(folder, manifest)) is not None:
        if say_why:
            print(f"rebuilding the feature cache: {problem}", file=sys.stderr)
        return None
    return manifest


@functools.lru_cache(maxsize=2)
def code_hash(names: tuple[str, ...]) -> str:
    """Hash of the files ``names`` (under src/msc) as this process first read them (read once: an edit
    made while a long run goes on does not change what the run computes)."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + (MSC_ROOT / name).read_bytes())
    return digest.hexdigest()


def preprocessing_code_hash() -> str:
    """Hash of the preprocessing code (``PREPROCESSING_CODE``)."""
    return code_hash(PREPROCESSING_CODE)


def preprocessing_settings(data: DataConfig, model: ModelConfig, features: FeaturesConfig) -> dict[str, object]:
    """What these sections say the cache must have been built with, by params.yaml key.

    Recorded in the manifest; stages that read the cache compare it with their own config
    (``check_settings``), which needs no pass over the data files. Data content and backbone weights
    are the featurize fingerprint's and DVC's to track.
    """
    return {
        "data.root": data.root,
        "data.text_encoding": data.text_encoding,
        "data.format": data.format,
        "data.table": data.table,
        "data.columns": dict(data.columns),
        "data.labels": data.labels,  # the class order of the cache's label ids
        "model.backbone": model.backbone,
        "model.revision": model.revision,
        "model.precision": model.precision,
        "model.family": model.family,
        "model.runtime": model.runtime,
        "features.augment_views": features.augment_views,
        "features.text_augment_views": features.text_augment_views,
        "features.max_text_tokens": features.max_text_tokens,
        "features.seed": features.seed,
        "features.top_layers": features.top_layers,
        "features.token_states": features.token_states,
        "preprocessing code": preprocessing_code_hash(),
    }


def runtime_key(model: ModelConfig) -> dict[str, object]:
    """What the runtime adds to the fingerprint: torch's resolved dtype (bf16 rounds differently from
    fp32; auto and fp32 are the same on a CPU), or onnxruntime's precision (fp32, int8), its version,
    the exporting torch's and the export and runtime code's hash."""
    from importlib.metadata import version

    if model.runtime == "torch":
        return {"dtype": str(resolve_dtype(model.precision, resolve_device(model.device)))}
    return {"dtype": "torch.float32", "runtime": {
        "name": model.runtime, "precision": model.runtime_precision, "onnxruntime": version("onnxruntime"),
        "torch": version("torch"), "code": code_hash(ONNX_RUNTIME_CODE)}}


def cache_fingerprint(data: DataConfig, model: ModelConfig, features: FeaturesConfig, data_hash: str,
                      identity: str | None = None, located: bool = True) -> str:
    """What decides staleness. Device, batch size and workers change speed, not content; the
    precision and the runtime do (``runtime_key``). The backbone counts by ``identity``
    (msc/model/provenance.py: a hub revision's commit, a folder's file digest), worked out here when not given.
    ``located=False`` (a shard's, msc/features/shards.py): where each machine keeps the backbone folder
    and the table does not count either, only their content."""
    from importlib.metadata import version

    settings = preprocessing_settings(data, model, features)
    del settings["data.root"]  # the data's content counts, not where it lies
    if not located:
        del settings["model.backbone"], settings["data.table"]
    del settings["model.precision"], settings["model.runtime"]  # runtime_key says what they decide
    if settings["features.token_states"]:
        del settings["features.token_states"]  # the default: caches built before the setting keep their fingerprint
    key = {
        **settings,
        "backbone": identity or backbone_identity(model.backbone, model.revision),
        **runtime_key(model),
        "libraries": {name: version(name) for name in ("transformers", "tokenizers", "pillow")},
        "data": data_hash,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def check_settings(manifest: CacheManifest, data: DataConfig, model: ModelConfig, features: FeaturesConfig, folder: Path) -> None:
    """Stop with a sentence when the cache in ``folder`` was built with other settings than these sections'."""
    built = manifest.preprocessing
    # A cache built before features.token_states or model.runtime existed holds the token states, by torch.
    before = {"features.token_states": True, "model.runtime": "torch"}
    changed = [key for key, value in preprocessing_settings(data, model, features).items()
               if built.get(key, before.get(key)) != value]
    if changed:
        code = [f"src/msc/{name}" for name in PREPROCESSING_CODE]
        named = [f"the preprocessing code ({', '.join(code)})" if key == "preprocessing code" else key for key in changed]
        raise UserError(f"the feature cache '{folder}' is stale: {', '.join(named)} changed since it was built; "
                        "run `python -m src.featurize` (or `dvc repro featurize`)")
