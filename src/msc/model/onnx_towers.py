"""``model.runtime: onnxruntime``: the backbone's towers run by onnxruntime on the CPU, in fp32 or int8.

The towers are exported from the fp32 backbone by msc/model/onnx_export.py once per backbone identity
(msc/model/provenance.py), precision, torch version and opset, into a folder of the tower cache
(``towers_root``), and reused by every later featurize, predict and served model on the machine. A
folder is built beside its final name and renamed into place whole, its ``towers.json`` written last
and checked on reuse; one process exports at a time (a lock), the others wait and reuse it. int8 is
onnxruntime's dynamic quantization of the fp32 export (weights int8, activations quantized per batch):
the fp32 folder is exported first and kept.

``OnnxBackbone`` stands in for the torch Backbone wherever tower features are computed: it keeps the
backbone's tokenizer, image preprocessing and sizes and replaces ``encode_text`` and ``encode_image``.
The hidden states that ``features.top_layers`` K > 0 caches are not in the export: refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch

from msc.core.errors import UserError
from msc.core.files import atomic_write_text, file_lock
from msc.model.backbone import Backbone, Encoded, load_backbone
from msc.model.onnx_export import IMAGE_TOWER, OPSET, TEXT_TOWER, export_towers
from msc.model.provenance import backbone_identity

TOWERS_JSON = "towers.json"
CACHE_ENV = "MSC_ONNX_CACHE"
TOP_LAYERS_REFUSED = ("model.runtime: onnxruntime computes the towers' outputs only, not the hidden states that "
                      "features.top_layers K > 0 caches (nor the top blocks train.top_layers k > 0 runs); set "
                      "features.top_layers: 0, or model.runtime: torch")


def towers_root() -> Path:
    """The tower cache: $MSC_ONNX_CACHE, else $XDG_CACHE_HOME/msc/onnx-towers, else ~/.cache/msc/onnx-towers."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "msc" / "onnx-towers"


def towers_key(identity: str, precision: str) -> str:
    """The folder name of the towers of the backbone ``identity`` in ``precision``: what decides their bytes,
    the code that exports them included (read through ``__file__``, so also inside a logged model's code/)."""
    import onnx
    import onnxruntime

    from msc.model import onnx_export

    code = hashlib.sha256(b"".join(Path(module).read_bytes() for module in (onnx_export.__file__, __file__)))
    key = {"identity": identity, "precision": precision, "torch": torch.__version__, "opset": OPSET,
           "onnx": onnx.__version__, "code": code.hexdigest(),
           "quantizer": onnxruntime.__version__ if precision == "int8" else None}
    return f"{precision}-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]}"


def complete(folder: Path, identity: str, precision: str) -> bool:
    """Whether ``folder`` holds both towers as its towers.json records them (written last: a complete export)."""
    try:
        record = json.loads((folder / TOWERS_JSON).read_text())
        return (record["identity"], record["precision"]) == (identity, precision) and all(
            (folder / name).stat().st_size == size for name, size in record["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_towers(backbone: Backbone, identity: str, precision: str, folder: Path, root: Path) -> None:
    """Both towers of ``backbone`` in ``precision`` into ``folder``, then towers.json."""
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        source = tower_folder(backbone, identity, "fp32", root)
        folder.mkdir(parents=True)
        # Without onnxruntime's pre-processing (shape inference), which fails on the exporter's large graphs
        # (issue 35); its root-logger warning that recommends it is muted meanwhile.
        muted = logging.root.manager.disable  # the caller's own level, put back afterwards
        logging.disable(max(muted, logging.WARNING))
        try:
            for name in (TEXT_TOWER, IMAGE_TOWER):
                quantize_dynamic(source / name, folder / name, weight_type=QuantType.QInt8)
        finally:
            logging.disable(muted)
    else:
        export_towers(backbone, folder)
    files = {name: (folder / name).stat().st_size for name in (TEXT_TOWER, IMAGE_TOWER)}
    atomic_write_text(folder / TOWERS_JSON, json.dumps(
        {"identity": identity, "precision": precision, "backbone": backbone.name, "torch": torch.__version__,
         "opset": OPSET, "files": files}, indent=2) + "\n")


def tower_folder(backbone: Backbone, identity: str, precision: str, root: Path | None = None) -> Path:
    """The folder of ``backbone``'s towers (fp32 or int8) under ``root`` (``towers_root()``), exported on first use."""
    root = root or towers_root()
    folder = root / towers_key(identity, precision)
    if complete(folder, identity, precision):
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the ONNX tower cache '{root}' ({error.strerror}); point {CACHE_ENV} at a "
                        "writable folder") from None
    with file_lock(root / f".{folder.name}.lock"):
        if complete(folder, identity, precision):  # another process exported it while this one waited
            return folder
        staging = root / f".{folder.name}.{uuid.uuid4().hex}.tmp"
        try:
            write_towers(backbone, identity, precision, staging, root)
            shutil.rmtree(folder, ignore_errors=True)  # an incomplete export under this cache's own name
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def run(session, values: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The graph on the inputs it has (the exporter drops an input a graph never reads: SigLIP's text mask)."""
    return session.run(None, {i.name: values[i.name] for i in session.get_inputs()})


class OnnxBackbone:
    """A Backbone whose towers run in onnxruntime; everything else (tokenizer, preprocessing, sizes,
    ``model`` and ``processor``) is the torch backbone's, loaded in fp32 on the CPU, without its towers' weights."""

    def __init__(self, backbone: Backbone, folder: Path, precision: str):
        import onnxruntime

        self.backbone, self.folder, self.precision = backbone, folder, precision
        # The sessions hold the towers' weights: torch's copy (most of the backbone) is dropped first, so the
        # two are never in memory together; the modules keep their shapes and the small layers beside them
        # (CLIP's projections, the logit scale) stay.
        backbone.model.text_model.to("meta")
        backbone.model.vision_model.to("meta")
        load = lambda name: onnxruntime.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])  # noqa: E731
        self.text, self.image = load(TEXT_TOWER), load(IMAGE_TOWER)

    def __getattr__(self, name: str):
        if name == "backbone":  # not set yet (unpickling): no recursion through the line below
            raise AttributeError(name)
        return getattr(self.backbone, name)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hidden_layers: int = 0) -> Encoded:
        """(B, L) ids and mask -> pooled (B, P) and per-token (B, L, P) features, as Backbone.encode_text.

        int8 runs one post at a time, a causal text at its own length: dynamic quantization scales
        each call's activations by their largest value, so in a batch a post's features would depend
        on the posts (and the padding) beside it, and the served model's would differ from the cache's.
        Its padding positions hold zeros (the heads mask them)."""
        if hidden_layers:
            raise UserError(TOP_LAYERS_REFUSED)
        ids, mask = input_ids.numpy().astype(np.int64), attention_mask.numpy().astype(np.int64)
        if self.precision != "int8":
            pooled, tokens = run(self.text, {"input_ids": ids, "attention_mask": mask})
            return Encoded(torch.from_numpy(pooled), torch.from_numpy(tokens))
        pooled, tokens = [], []
        for row_ids, row_mask in zip(ids, mask):
            length = int(row_mask.sum()) if self.backbone.causal_text else len(row_ids)
            one_pooled, one_tokens = run(self.text, {"input_ids": row_ids[None, :length],
                                                     "attention_mask": row_mask[None, :length]})  # (1, P), (1, l, P)
            pooled.append(one_pooled)
            tokens.append(np.pad(one_tokens, ((0, 0), (0, ids.shape[1] - length), (0, 0))))
        return Encoded(torch.from_numpy(np.concatenate(pooled)), torch.from_numpy(np.concatenate(tokens)))

    def encode_image(self, pixel_values: torch.Tensor, hidden_layers: int = 0) -> Encoded:
        """(B, 3, H, W) pixels -> pooled (B, P) and per-patch (B, M, P) features, as Backbone.encode_image;
        int8 one image at a time (see encode_text)."""
        if hidden_layers:
            raise UserError(TOP_LAYERS_REFUSED)
        pixels = pixel_values.float().numpy()
        calls = [pixels] if self.precision != "int8" else [pixels[i : i + 1] for i in range(len(pixels))]
        pooled, tokens = zip(*(run(self.image, {"pixel_values": call}) for call in calls))
        return Encoded(torch.from_numpy(np.concatenate(pooled)), torch.from_numpy(np.concatenate(tokens)))


def runtime_backbone(name: str, revision: str, device: str, precision: str, family: str | None, runtime: str,
                     identity: str | None = None) -> Backbone | OnnxBackbone:
    """The backbone that computes features under ``runtime``: torch on ``device`` in ``precision``, or
    onnxruntime on the CPU in ``precision`` (auto = fp32, or int8) with the towers of ``identity`` (the
    backbone's identity, worked out here when not given)."""
    if runtime == "torch":
        return load_backbone(name, revision, device, precision, family)
    try:
        import onnx  # noqa: F401 - the exporter writes through it
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise UserError(f"model.runtime: onnxruntime needs the {error.name} package, which is not installed; "
                        "install msc's onnx extra (`pip install -e '.[onnx]'`), or set model.runtime: torch") from None
    backbone = load_backbone(name, revision, "cpu", "fp32", family)  # what the towers are exported from
    onnx_precision = "fp32" if precision == "auto" else precision
    identity = identity or backbone_identity(name, revision)
    return OnnxBackbone(backbone, tower_folder(backbone, identity, onnx_precision), onnx_precision)
