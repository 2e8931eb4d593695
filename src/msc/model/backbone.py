"""The frozen CLIP backbone, loaded by name and returned with its preprocessing.

``model.backbone`` is a Hugging Face hub id or a local folder written by ``save_pretrained``
(the real CLIP, or the tiny one from ``python -m src.sample``); both go through
``CLIPModel.from_pretrained``. Token-level features are projected into CLIP's joint space, so
text tokens and image patches share one width and cross-attention can compare them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from msc.core.errors import UserError
from msc.core.paths import local_folder, plainly_a_path

SAMPLE_BACKBONE = "models/tiny-clip"


def clip_pixels(image_processor, image: Image.Image) -> np.ndarray:
    """The one image preprocessing path, for training features and prediction: (3, H, W) float32.

    A plain function of the processor, so DataLoader workers can run it without the model.
    """
    return image_processor(images=image, return_tensors="np")["pixel_values"][0]


@dataclass
class Backbone:
    model: "transformers.CLIPModel"  # noqa: F821 - imported lazily, transformers is slow to import
    processor: "transformers.CLIPProcessor"  # noqa: F821
    name: str
    device: torch.device
    dtype: torch.dtype

    @property
    def dim(self) -> int:
        """Width P of the joint space that every cached feature lives in."""
        return self.model.config.projection_dim

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        """CLIP's own resize, centre crop and normalisation: (3, H, W) float32."""
        return clip_pixels(self.processor.image_processor, image)

    def tokenize(self, texts: list[str], max_tokens: int) -> dict[str, torch.Tensor]:
        """Token ids and attention mask, padded to the batch's longest text: (B, L)."""
        return self.processor.tokenizer(
            texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
        )

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) ids -> pooled (B, P) and per-token (B, L, P) features in the joint space."""
        out = self.model.text_model(
            input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
        )
        # last_hidden_state already went through final_layer_norm: (B, L, D_text)
        pooled = self.model.text_projection(out.pooler_output)
        tokens = self.model.text_projection(out.last_hidden_state)
        return pooled, tokens

    def encode_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> pooled (B, P) and per-patch (B, 1 + patches, P) features."""
        out = self.model.vision_model(pixel_values=pixel_values.to(self.device, self.dtype))
        pooled = self.model.visual_projection(out.pooler_output)  # post_layernorm(CLS) projected
        # The pooled path applies post_layernorm to CLS only; apply it to every patch alike.
        tokens = self.model.visual_projection(self.model.vision_model.post_layernorm(out.last_hidden_state))
        return pooled, tokens


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Freeze every parameter and switch to eval mode (no dropout): the backbone never trains."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


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


def offline_help(name: str) -> str:
    return (
        f"cannot load the backbone '{name}': it is neither a local folder nor in the Hugging Face "
        f"cache, and the hub is not reachable. Either download it once with network access "
        f"(`huggingface-cli download {name}`), point model.backbone in params.yaml at a local "
        f"folder saved with save_pretrained, or use the sample backbone "
        f"(`python -m src.sample`, then model.backbone: {SAMPLE_BACKBONE})"
    )


# model_type (a checkpoint's config.json) -> loader(source, dtype, **from_pretrained kwargs) -> (model, processor)
BACKBONE_FAMILIES: dict[str, Callable[..., tuple]] = {}
DEFAULT_FAMILY = "clip"  # a hub id is not looked up before loading: it is read as a CLIP checkpoint


def register_family(model_type: str):
    """Function decorator: load checkpoints whose config.json says ``model_type`` with this loader."""
    def register(loader: Callable[..., tuple]) -> Callable[..., tuple]:
        BACKBONE_FAMILIES[model_type] = loader
        return loader

    return register


@register_family("clip")
def load_clip(source: str, dtype: torch.dtype, **kwargs) -> tuple:
    import transformers

    return (transformers.CLIPModel.from_pretrained(source, dtype=dtype, **kwargs),
            transformers.CLIPProcessor.from_pretrained(source, **kwargs))


def backbone_family(folder: Path | None) -> str:
    """The family of a local checkpoint folder from its config.json's ``model_type``; a sentence when
    no registered family loads it."""
    config_file = None if folder is None else folder / "config.json"
    if config_file is None or not config_file.is_file():
        return DEFAULT_FAMILY
    try:
        model_type = json.loads(config_file.read_text()).get("model_type", DEFAULT_FAMILY)
    except ValueError as error:
        raise UserError(f"{config_file} is not valid JSON ({error}); save the backbone again with save_pretrained") from None
    if model_type not in BACKBONE_FAMILIES:
        raise UserError(f"{config_file} says model_type '{model_type}', and msc loads only "
                        f"{', '.join(sorted(BACKBONE_FAMILIES))} backbones; point model.backbone at one of those")
    return model_type


def load_backbone(name: str, revision: str = "main", device: str = "auto", precision: str = "auto") -> Backbone:
    """Load CLIP by hub id or folder, frozen, on ``device`` in ``precision``."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    folder = local_folder(name)
    if folder is None and plainly_a_path(name):  # never asked of the hub: that costs retries and misleads
        raise UserError(f"model.backbone '{name}' is a path, and there is no folder there. Point it at a folder "
                        f"saved with save_pretrained, or write the sample backbone with `python -m src.sample` "
                        f"(it goes to {SAMPLE_BACKBONE})")
    source = str(folder) if folder else name
    local = folder is not None
    torch_device = resolve_device(device)
    dtype = resolve_dtype(precision, torch_device)
    kwargs = {} if local else {"revision": revision}
    family = backbone_family(folder)
    try:
        model, processor = BACKBONE_FAMILIES[family](source, dtype, **kwargs)
    except (OSError, ValueError) as error:
        if local:
            raise UserError(f"model.backbone folder '{name}' is not a {family} checkpoint: {error}") from None
        raise UserError(offline_help(name)) from None
    model = freeze(model).to(torch_device)
    return Backbone(model, processor, name, torch_device, dtype)


def backbone_identity(name: str, revision: str) -> str:
    """What decides whether cached features are stale with respect to the backbone.

    A local folder is identified by the content of its config and weights; a hub id by id and
    revision (pin a commit hash as model.revision for a fully content-addressed cache).
    """
    folder = local_folder(name)
    if folder is None:
        return f"hub:{name}@{revision}"
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return f"folder:{digest.hexdigest()}"
