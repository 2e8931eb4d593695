"""Exporting a logged or registered model by URI into an onnxruntime bundle (msc/model/onnx_bundle.py)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from msc.core.errors import UserError
from msc.model.backbone import load_backbone
from msc.model.onnx_bundle import write_bundle
from msc.model.onnx_towers import OnnxBackbone
from msc.model.spec import HEAD_SPEC, backbone_reference, read_head_spec
from msc.track.inference import checked_model, load_model


def export_model(model_uri: str, out: Path) -> Path:
    """Write the bundle of the model at ``model_uri`` into ``out``; refused for a model with its own
    top blocks (``train.top_layers`` k > 0), whose export is not written yet."""
    local = checked_model(model_uri)  # every file as logged (and registered) before any is read
    head_file = local / "artifacts" / HEAD_SPEC
    if not head_file.is_file():
        raise UserError(f"model '{model_uri}' has no artifacts/{HEAD_SPEC}: it was not logged by msc, or logged "
                        "before head specs existed; export a model that `python -m src.tune` logged")
    head_json = json.loads(head_file.read_text())
    spec = read_head_spec(head_file)
    if spec.train.get("top_layers", 0):
        raise UserError(f"model '{model_uri}' trains its own top {spec.train['top_layers']} blocks "
                        "(train.top_layers > 0), and src.export does not export those yet; export a model "
                        "trained with train.top_layers: 0")
    model = load_model(model_uri, checked=local).unwrap_python_model()
    backbone, towers = model.backbone, None
    if isinstance(backbone, OnnxBackbone):  # model.runtime: onnxruntime: the towers it runs, int8 included
        backbone, towers = backbone.backbone, backbone.folder
    if backbone.dtype != torch.float32 or backbone.device.type != "cpu":  # a GPU loads it in fp16
        bundled = local / "artifacts" / "backbone"
        backbone = load_backbone(str(bundled) if bundled.is_dir() else backbone_reference(spec), spec.revision,
                                 device="cpu", precision="fp32", family=spec.family)
    return write_bundle(backbone, model.head, head_json, model_uri, out, towers)
