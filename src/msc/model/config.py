"""params.yaml's ``model`` section: the frozen backbone, where and how it runs, checked against the
backbone families this layer registers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from msc.core.settings import require
from msc.model.backbone import BACKBONE_FAMILIES

# What each runtime computes the tower features in: torch in a torch dtype, onnxruntime (on the CPU)
# in fp32 or with its weights dynamically quantized to int8 (msc/model/onnx_towers.py).
RUNTIME_PRECISIONS = {"torch": ("auto", "fp32", "fp16", "bf16"), "onnxruntime": ("auto", "fp32", "int8")}


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "openai/clip-vit-base-patch32"  # hub id or local folder
    revision: str = "main"  # hub revision; ignored for a local folder
    device: str = "auto"  # auto (cuda when present) | cpu | cuda | cuda:N; onnxruntime runs on the CPU
    # auto: fp16 on GPU, fp32 on CPU (onnxruntime: fp32); int8: onnxruntime's dynamic quantization only
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"
    family: str | None = None  # None: the checkpoint's config.json model_type says it; else clip | siglip
    # What computes the tower features (featurize, predict, the served model): torch, or onnxruntime on
    # the CPU with towers exported once per backbone identity and precision (msc/model/onnx_towers.py)
    runtime: Literal["torch", "onnxruntime"] = "torch"

    def __post_init__(self) -> None:
        require(self.family is None or self.family in BACKBONE_FAMILIES, "model.family", self.family,
                f"must be null (read from the checkpoint's config.json) or one of {', '.join(BACKBONE_FAMILIES)}")
        allowed = RUNTIME_PRECISIONS[self.runtime]
        other = "onnxruntime" if self.runtime == "torch" else "torch"
        require(self.precision in allowed, "model.precision", self.precision,
                f"must be one of {', '.join(allowed)} with model.runtime: {self.runtime} "
                f"({self.precision} needs model.runtime: {other})")
        require(self.runtime == "torch" or not self.device.startswith("cuda"), "model.device", self.device,
                "must be auto or cpu with model.runtime: onnxruntime, which runs the towers on the CPU; "
                "on a GPU keep model.runtime: torch (the default), which runs them there in fp16")

    @property
    def runtime_precision(self) -> str:
        """What onnxruntime's towers compute in: fp32 (auto and fp32) or int8; for torch, the precision as set."""
        return "fp32" if self.runtime == "onnxruntime" and self.precision == "auto" else self.precision
