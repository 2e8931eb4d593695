"""ONNX graphs of a backbone's two towers and of a fusion head, for onnxruntime on the CPU.

The towers take what ``Backbone.tokenize`` and ``Backbone.preprocess_image`` give and return what
``Backbone.encode_text`` / ``encode_image`` return (pooled and per-token features in the joint space),
so a graph can replace the torch tower wherever features are computed. The head graph takes the
FeatureBatch fields the head reads and returns its logits. Every batch size and every text length
runs: the batch and the text length are dynamic axes.

Exported with the TorchScript exporter (``dynamo=False``), which traces one call and keeps the shape
arithmetic of the dynamic axes (the ``early`` head's ``1 + L`` slice included); the torch.export-based
exporter, the default since torch 2.9, needs onnxscript, takes far longer on a transformer, and writes
its weights as external-data files that onnxruntime's quantization pre-processing cannot read.

Shapes: B batch, L text tokens, M image tokens, P the joint width, C classes.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from msc.model.backbone import Backbone
from msc.model.batch import FeatureBatch
from msc.model.heads import FusionHead

OPSET = 17  # onnxruntime 1.16 and later run it; SDPA and LayerNormalization export natively
TEXT_TOWER, IMAGE_TOWER, HEAD = "text_tower.onnx", "image_tower.onnx", "head.onnx"
POOLED_INPUTS = ("text_pooled", "image_pooled")
TOKEN_INPUTS = ("text_tokens", "text_mask", "image_tokens")
BATCH, LENGTH = "batch", "text_length"


class TextTower(nn.Module):
    """(B, L) ids and mask -> pooled (B, P) and per-token (B, L, P) features."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.model, self.backbone = backbone.model, backbone  # the module registers the weights

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.backbone.encode_text(input_ids, attention_mask)
        return encoded.pooled, encoded.tokens


class ImageTower(nn.Module):
    """(B, 3, H, W) pixels -> pooled (B, P) and per-patch (B, M, P) features."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.model, self.backbone = backbone.model, backbone

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.backbone.encode_image(pixel_values)
        return encoded.pooled, encoded.tokens


class HeadGraph(nn.Module):
    """The head over positional tensors, the inputs ``head_inputs`` names, in that order -> logits (B, C)."""

    def __init__(self, head: FusionHead):
        super().__init__()
        self.head = head

    def forward(self, text_pooled, image_pooled, text_tokens=None, text_mask=None, image_tokens=None) -> torch.Tensor:
        return self.head(FeatureBatch(text_pooled, image_pooled, text_tokens, text_mask, image_tokens))


def head_inputs(head: FusionHead) -> tuple[str, ...]:
    """The FeatureBatch fields ``head`` reads, the head graph's input names."""
    return POOLED_INPUTS + (TOKEN_INPUTS if head.uses_tokens else ())


def export(module: nn.Module, args: tuple, path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...],
           axes: dict[str, dict[int, str]]) -> Path:
    """Trace ``module`` on ``args`` into ``path`` with the named inputs and outputs and dynamic ``axes``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # Off while tracing: the fused kernel of nn.TransformerEncoderLayer and nn.MultiheadAttention in
    # eval mode (aten::_transformer_encoder_layer_fwd) has no ONNX form; the unfused ops compute the same.
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        trace(module, args, path, inputs, outputs, axes)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return path


def trace(module: nn.Module, args: tuple, path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...],
          axes: dict[str, dict[int, str]]) -> None:
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # The tracer warns of every Python branch on a shape it records as a constant; the parity
        # tests run each graph at other batch sizes and text lengths than the traced ones.
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def export_towers(backbone: Backbone, folder: Path) -> tuple[Path, Path]:
    """The text and image towers of ``backbone`` (fp32 on the CPU) as ONNX files in ``folder``.

    They depend on the backbone alone, so featurize can export them once per backbone identity and
    reuse them for every head (msc's plan for ``model.runtime: onnxruntime``)."""
    if backbone.dtype != torch.float32 or backbone.device.type != "cpu":
        raise ValueError(f"export the towers from an fp32 backbone on the CPU, not {backbone.dtype} on {backbone.device}")
    encoded = backbone.tokenize(["an example text", "a second, longer example of a text"], 77)  # (2, L)
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    side = backbone.model.config.vision_config.image_size
    pixels = torch.zeros(2, 3, side, side)
    text = export(TextTower(backbone), (ids, mask), folder / TEXT_TOWER, ("input_ids", "attention_mask"),
                  ("pooled", "tokens"), {"input_ids": {0: BATCH, 1: LENGTH}, "attention_mask": {0: BATCH, 1: LENGTH},
                                         "pooled": {0: BATCH}, "tokens": {0: BATCH, 1: LENGTH}})
    image = export(ImageTower(backbone), (pixels,), folder / IMAGE_TOWER, ("pixel_values",), ("pooled", "tokens"),
                   {"pixel_values": {0: BATCH}, "pooled": {0: BATCH}, "tokens": {0: BATCH}})
    return text, image


def export_head(head: FusionHead, dim: int, image_tokens: int, path: Path) -> Path:
    """``head`` (eval mode, fp32) as an ONNX graph over the inputs ``head_inputs`` names -> ``logits`` (B, C).

    Traced at a text length of 5 with a padded token, so neither the length nor the mask is frozen in.
    A head over tokens goes through the torch.export-based exporter: the TorchScript trace of
    nn.MultiheadAttention freezes the key length (its reshape of the keys to (L, B * heads, H / heads)
    keeps the traced L), so an `early` or `cross_attention` graph ran only at the traced text length."""
    if getattr(head, "hidden_layers", 0):
        raise ValueError("a model with train.top_layers k > 0 runs its own top blocks on hidden states; "
                         "its export is not written yet")
    batch, length = 2, 5
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, -1] = False
    names = head_inputs(head)
    args = (torch.randn(batch, dim), torch.randn(batch, dim), torch.randn(batch, length, dim), mask,
            torch.randn(batch, image_tokens, dim))[: len(names)]
    axes = {name: {0: BATCH} for name in names} | {"logits": {0: BATCH}}
    if not head.uses_tokens:
        return export(HeadGraph(head), args, path, names, ("logits",), axes)
    axes["text_tokens"], axes["text_mask"] = {0: BATCH, 1: LENGTH}, {0: BATCH, 1: LENGTH}
    dims = {BATCH: torch.export.Dim.DYNAMIC, LENGTH: torch.export.Dim.DYNAMIC}
    shapes = tuple({axis: dims[name] for axis, name in axes[input_name].items()} for input_name in names)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # its progress lines and warnings say nothing a user can act on
        torch.onnx.export(HeadGraph(head).eval(), args, str(path), input_names=list(names), output_names=["logits"],
                          dynamic_shapes=shapes, dynamo=True, external_data=False, opset_version=18, verbose=False)
    return path
