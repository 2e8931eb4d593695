"""The frozen backbone, loaded by name and returned with its preprocessing.

``model.backbone`` is a Hugging Face hub id or a local folder written by ``save_pretrained``
(a real checkpoint, or a tiny random one from ``python -m src.sample``). Its config.json's
``model_type`` names its family, a Backbone subclass registered with ``@register_family``: ``clip``
or ``siglip``. Each family's token-level features live in its joint space, so text tokens and
image patches share one width and cross-attention can compare them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np
import torch
from PIL import Image

from msc.core.errors import UserError
from msc.core.paths import local_folder, plainly_a_path
from msc.model.devices import resolve_device, resolve_dtype

SAMPLE_BACKBONE = "models/tiny-clip"


def clip_pixels(image_processor, image: Image.Image) -> np.ndarray:
    """The one image preprocessing path, for training features and prediction: (3, H, W) float32.

    A plain function of the processor, so DataLoader workers can run it without the model.
    """
    return image_processor(images=image, return_tensors="np")["pixel_values"][0]


# model_type (a checkpoint's config.json) -> the Backbone subclass that loads and runs it
BACKBONE_FAMILIES: dict[str, type["Backbone"]] = {}


def register_family(model_type: str):
    """Class decorator: load checkpoints whose config.json says ``model_type`` with this Backbone class."""
    def register(family: type["Backbone"]) -> type["Backbone"]:
        BACKBONE_FAMILIES[model_type] = family
        family.family = model_type
        return family

    return register


class Encoded(NamedTuple):
    """One tower's output for a batch."""

    pooled: torch.Tensor  # (B, P) in the joint space
    tokens: torch.Tensor  # (B, T, P) per token or patch, in the joint space
    # hidden[j - 1]: the hidden states entering the tower's last j blocks, (B, T, D), j = 1..K
    hidden: tuple[torch.Tensor, ...] = ()


def entering_last_blocks(out, hidden_layers: int) -> tuple[torch.Tensor, ...]:
    """From a tower's output with ``output_hidden_states`` (the embeddings, then each block's output),
    the states entering its last 1, 2, ..., ``hidden_layers`` blocks."""
    return tuple(out.hidden_states[-(j + 1)] for j in range(1, hidden_layers + 1))


@dataclass
class Backbone:
    """A frozen two-tower backbone and its preprocessing; each family (CLIP, SigLIP) subclasses it.

    Every feature it returns lives in one joint space of width ``dim`` (P), so that text tokens and
    image patches can be compared by cross-attention."""

    model: "transformers.PreTrainedModel"  # noqa: F821 - imported lazily, transformers is slow to import
    processor: "transformers.ProcessorMixin"  # noqa: F821
    name: str
    device: torch.device
    dtype: torch.dtype
    family: ClassVar[str]  # its model_type, set by register_family
    # True where a real token's state never depends on the padding after it (a causal text tower
    # that pools at the end-of-text token): texts may then be padded to each batch's longest.
    causal_text: ClassVar[bool] = True

    @classmethod
    def load(cls, source: str, dtype: torch.dtype, **kwargs) -> tuple:
        """(model, processor) from a hub id or a folder; ``kwargs`` go to ``from_pretrained``."""
        raise NotImplementedError

    @property
    def dim(self) -> int:
        raise NotImplementedError

    @property
    def blocks(self) -> int:
        """Transformer blocks of the shallower tower: the most ``features.top_layers`` can be."""
        return min(self.model.config.text_config.num_hidden_layers, self.model.config.vision_config.num_hidden_layers)

    @property
    def hidden_widths(self) -> tuple[int, int]:
        """(D_t, D_v): the widths of the text and image towers' hidden states."""
        return self.model.config.text_config.hidden_size, self.model.config.vision_config.hidden_size

    @property
    def image_tokens(self) -> int:
        """M, the image tokens per image that ``encode_image`` returns."""
        vision = self.model.config.vision_config
        return (vision.image_size // vision.patch_size) ** 2

    @property
    def logit_scale(self) -> float:
        """The learned scale of the cosine similarities between the towers (the zero-shot baseline's)."""
        return float(self.model.logit_scale.exp())

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        """The family's own resize, crop and normalisation: (3, H, W) float32."""
        return clip_pixels(self.processor.image_processor, image)

    def tokenize(self, texts: list[str], max_tokens: int) -> dict[str, torch.Tensor]:
        """Token ids and attention mask, padded to the batch's longest text: (B, L)."""
        return self.processor.tokenizer(
            texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
        )


@register_family("clip")
class ClipBackbone(Backbone):
    """Any CLIPModel checkpoint: OpenAI's, MetaCLIP's, LAION's in transformers format."""

    @classmethod
    def load(cls, source: str, dtype: torch.dtype, **kwargs) -> tuple:
        import transformers

        return (transformers.CLIPModel.from_pretrained(source, dtype=dtype, **kwargs),
                transformers.CLIPProcessor.from_pretrained(source, **kwargs))

    @property
    def dim(self) -> int:
        return self.model.config.projection_dim

    @property
    def image_tokens(self) -> int:
        return super().image_tokens + 1  # the patches and CLS

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hidden_layers: int = 0) -> Encoded:
        """(B, L) ids -> pooled (B, P) and per-token (B, L, P) features in the joint space, and the
        hidden states (B, L, D_t) entering the last 1..``hidden_layers`` blocks."""
        out = self.model.text_model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                                    output_hidden_states=hidden_layers > 0)
        # last_hidden_state already went through final_layer_norm: (B, L, D_text)
        pooled = self.model.text_projection(out.pooler_output)
        tokens = self.model.text_projection(out.last_hidden_state)
        return Encoded(pooled, tokens, entering_last_blocks(out, hidden_layers))

    def encode_image(self, pixel_values: torch.Tensor, hidden_layers: int = 0) -> Encoded:
        """(B, 3, H, W) -> pooled (B, P) and per-patch (B, 1 + patches, P) features, and the hidden
        states (B, 1 + patches, D_v) entering the last 1..``hidden_layers`` blocks."""
        out = self.model.vision_model(pixel_values=pixel_values.to(self.device, self.dtype),
                                      output_hidden_states=hidden_layers > 0)
        pooled = self.model.visual_projection(out.pooler_output)  # post_layernorm(CLS) projected
        # The pooled path applies post_layernorm to CLS only; apply it to every patch alike.
        tokens = self.model.visual_projection(self.model.vision_model.post_layernorm(out.last_hidden_state))
        return Encoded(pooled, tokens, entering_last_blocks(out, hidden_layers))


@register_family("siglip")
class SiglipBackbone(Backbone):
    """SigLIP and the fixed-resolution SigLIP 2 checkpoints (config.json says ``siglip``).

    Its text tower pools the state at the last position and was trained on texts padded to a fixed
    length, without an attention mask: so every text is padded to that length (the padding changes
    the pooled feature), and the mask only tells the heads which tokens are real. It has no
    projection layers: each tower's own head maps into the joint space (the text head is a linear
    layer, applied here to every token as to the pooled one; the image head attention-pools the
    patches, whose states are already in the joint width)."""

    causal_text: ClassVar[bool] = False

    @classmethod
    def load(cls, source: str, dtype: torch.dtype, **kwargs) -> tuple:
        import transformers

        return (transformers.SiglipModel.from_pretrained(source, dtype=dtype, **kwargs),
                transformers.SiglipProcessor.from_pretrained(source, **kwargs))

    @property
    def dim(self) -> int:
        text, image = self.model.text_model.head.out_features, self.model.config.vision_config.hidden_size
        if text != image:  # every SigLIP and SigLIP 2 checkpoint published has one width; the heads need one
            raise UserError(f"model.backbone '{self.name}': its text features are {text} wide and its image "
                            f"features {image}; msc needs one width for both, as every published SigLIP has")
        return text

    def tokenize(self, texts: list[str], max_tokens: int) -> dict[str, torch.Tensor]:
        """Padded and truncated to the trained length whatever ``max_tokens`` says: (B, L_trained)."""
        length = self.model.config.text_config.max_position_embeddings
        return self.processor.tokenizer(texts, padding="max_length", truncation=True, max_length=length,
                                        return_tensors="pt", return_attention_mask=True)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hidden_layers: int = 0) -> Encoded:
        """(B, L) ids -> pooled (B, P), per-token (B, L, P) and the hidden states (B, L, D) entering the
        last 1..``hidden_layers`` blocks; the mask is not the model's (see above)."""
        out = self.model.text_model(input_ids=input_ids.to(self.device), output_hidden_states=hidden_layers > 0)
        # final_layer_norm applied: (B, L, D)
        return Encoded(out.pooler_output, self.model.text_model.head(out.last_hidden_state),
                       entering_last_blocks(out, hidden_layers))

    def encode_image(self, pixel_values: torch.Tensor, hidden_layers: int = 0) -> Encoded:
        """(B, 3, H, W) -> attention-pooled (B, P), per-patch (B, patches, P) features and the hidden
        states (B, patches, D) entering the last 1..``hidden_layers`` blocks."""
        out = self.model.vision_model(pixel_values=pixel_values.to(self.device, self.dtype),
                                      output_hidden_states=hidden_layers > 0)
        # post_layernorm applied to every patch
        return Encoded(out.pooler_output, out.last_hidden_state, entering_last_blocks(out, hidden_layers))


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Freeze every parameter and switch to eval mode (no dropout): the backbone never trains."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


def offline_help(name: str) -> str:
    return (
        f"cannot load the backbone '{name}': it is neither a local folder nor in the Hugging Face "
        f"cache, and the hub is not reachable. Either download it once with network access "
        f"(`huggingface-cli download {name}`), point model.backbone in params.yaml at a local "
        f"folder saved with save_pretrained, or use the sample backbone "
        f"(`python -m src.sample`, then model.backbone: {SAMPLE_BACKBONE})"
    )


def backbone_family(folder: Path | None, name: str, revision: str) -> str:
    """The family of a checkpoint from its config.json's ``model_type`` (for a hub id, that file alone
    is fetched, or read from the Hugging Face cache); a sentence when no registered family loads it."""
    if folder is None:
        import transformers

        model_type = transformers.AutoConfig.from_pretrained(name, revision=revision).model_type
        where = f"the hub's {name}/config.json"
    else:
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise UserError(f"model.backbone folder '{folder}' has no config.json; save the backbone there with "
                            "save_pretrained (or `python -m src.sample --no-data --backbone-out DIR`)")
        try:
            model_type = json.loads(config_file.read_text()).get("model_type")
        except ValueError as error:
            raise UserError(f"{config_file} is not valid JSON ({error}); save the backbone again with "
                            "save_pretrained") from None
        where = str(config_file)
    if model_type not in BACKBONE_FAMILIES:
        raise UserError(f"{where} says model_type '{model_type}', and msc loads only "
                        f"{', '.join(sorted(BACKBONE_FAMILIES))} backbones; point model.backbone at one of those")
    return model_type


def backbone_folder(name: str) -> Path | None:
    """``name`` as a local folder, or None for a hub id; a sentence for a path with no folder there."""
    folder = local_folder(name)
    if folder is None and plainly_a_path(name):  # never asked of the hub: that costs retries and misleads
        raise UserError(f"model.backbone '{name}' is a path, and there is no folder there. Point it at a folder "
                        f"saved with save_pretrained, or write the sample backbone with `python -m src.sample` "
                        f"(it goes to {SAMPLE_BACKBONE})")
    return folder


def load_backbone(name: str, revision: str = "main", device: str = "auto", precision: str = "auto",
                  family: str | None = None) -> Backbone:
    """Load a backbone by hub id or folder, frozen, on ``device`` in ``precision``; its family is
    ``family`` (``model.family``) when given, else its config.json's model_type."""
    import huggingface_hub
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    huggingface_hub.utils.logging.set_verbosity_error()  # an unreachable hub's retry warnings hid msc's own sentence
    folder = backbone_folder(name)
    source = str(folder) if folder else name
    local = folder is not None
    torch_device = resolve_device(device)
    dtype = resolve_dtype(precision, torch_device)
    kwargs = {} if local else {"revision": revision}
    named = family or "unknown"
    try:
        named = family or backbone_family(folder, name, revision)
        model, processor = BACKBONE_FAMILIES[named].load(source, dtype, **kwargs)
    except (OSError, ValueError) as error:
        if local:
            raise UserError(f"model.backbone folder '{name}' is not a {named} checkpoint: {error}") from None
        raise UserError(offline_help(name)) from None
    model = freeze(model).to(torch_device)
    return BACKBONE_FAMILIES[named](model, processor, name, torch_device, dtype)
