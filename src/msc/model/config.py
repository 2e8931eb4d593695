"""params.yaml's ``model`` section: the frozen backbone and where it runs, checked against the
backbone families this layer registers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from msc.core.settings import require
from msc.model.backbone import BACKBONE_FAMILIES


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "openai/clip-vit-base-patch32"  # hub id or local folder
    revision: str = "main"  # hub revision; ignored for a local folder
    device: str = "auto"  # auto (cuda when present) | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # auto: fp16 on GPU, fp32 on CPU
    family: str | None = None  # None: the checkpoint's config.json model_type says it; else clip | siglip

    def __post_init__(self) -> None:
        require(self.family is None or self.family in BACKBONE_FAMILIES, "model.family", self.family,
                f"must be null (read from the checkpoint's config.json) or one of {', '.join(BACKBONE_FAMILIES)}")
