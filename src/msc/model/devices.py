"""Where and in what precision models run: params.yaml's device and precision settings as torch objects."""

from __future__ import annotations

import torch

from msc.core.errors import UserError


def resolve_device(device: str, key: str = "model.device") -> torch.device:
    """``device`` (auto | cpu | cuda | cuda:N, read from params.yaml's ``key``) as a torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"params.yaml: {key} is '{device}' but no CUDA device is visible; use auto or cpu")
    return torch.device(device)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """auto: fp16 on a GPU (half the memory traffic), fp32 on a CPU (fp16 matmuls are slow there)."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
