"""Trainable top layers: copies of a backbone's last k transformer blocks per tower, run on cached
hidden states, with the fusion head on top (``train.top_layers: k``).

``featurize`` with ``features.top_layers: K`` caches, per tower, the hidden states that enter the
last K blocks. A model with k <= K starts from those of the last k and runs only k blocks forward and
backward, so a trial never re-encodes the backbone below them. Each tower's top is the copied blocks,
the tower's final norm and its projection into the joint space, so it returns the same pooled and
token features as ``Backbone.encode_text`` / ``encode_image`` do (tests/unit/model/test_top_layers.py checks it).

``train.top_layers_adapter``:
- ``full``: every weight of the copied blocks, the final norm and the projection trains;
- ``lora``: the copies stay frozen and low-rank adapters (the ``peft`` library, rank
  ``train.lora_rank``) on their attention and MLP projections train. The logged model then holds only
  the adapters and the head; the frozen copies come from the backbone when it loads.

Shapes: B batch, L text tokens, M image tokens, D a tower's hidden width, P the joint width.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from msc.model.batch import FeatureBatch
from msc.model.heads import FusionHead

if TYPE_CHECKING:
    from msc.model.backbone import Backbone

# The linear layers of a CLIP or SigLIP block that LoRA adapts: attention and MLP projections.
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
# family -> (text top class, image top class), filled by ``register_tops``
FAMILY_TOPS: dict[str, tuple[type["TowerTop"], type["TowerTop"]]] = {}


def register_tops(family: str):
    """Class decorator on a (text, image) pair holder: how ``family``'s towers end."""
    def register(pair: type) -> type:
        FAMILY_TOPS[family] = (pair.Text, pair.Image)
        return pair

    return register


class TowerTop(nn.Module):
    """One tower's last k blocks, its final norm and its projection: hidden states -> joint features."""

    def __init__(self, blocks: nn.ModuleList, norm: nn.Module, projection: nn.Module, config):
        super().__init__()
        self.blocks, self.norm, self.projection = blocks, norm, projection
        self.config = config  # the tower's transformers config (the attention masks read it)

    @staticmethod
    def parts(model: nn.Module) -> tuple[nn.ModuleList, nn.Module, nn.Module, object]:
        """The backbone's (blocks, final norm, projection, tower config) for this tower."""
        raise NotImplementedError

    def run_blocks(self, hidden: torch.Tensor, attention_mask) -> torch.Tensor:
        for block in self.blocks:
            hidden = block(hidden, attention_mask)
        return hidden

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor | None]:
        """(B, L, D) hidden states entering the blocks -> pooled (B, P), tokens (B, L', P) and the
        tokens' mask (B, L') (None for images), L' <= L."""
        raise NotImplementedError


@register_tops("clip")
class ClipTops:
    class Text(TowerTop):
        """Causal blocks; pooled at the end-of-text token, the last real one."""

        @staticmethod
        def parts(model):
            text = model.text_model
            return text.encoder.layers, text.final_layer_norm, model.text_projection, text.config

        def forward(self, hidden, mask):
            # Causal: a real token never sees the padding after it, so trimming to the batch's
            # longest text is exact, and cheaper, and the padding needs no mask of its own. The
            # additive mask is built here rather than by transformers.masking_utils, whose
            # signature changed within 5.x (5.17 takes cache_position and past_key_values, 5.25
            # a cache), and it works for the eager and SDPA attention CLIP runs with.
            length = max(int(mask.sum(1).max()), 1)
            hidden, mask = hidden[:, :length], mask[:, :length]
            blocked = torch.ones(length, length, dtype=torch.bool, device=hidden.device).triu(1)  # (L', L') future
            causal = torch.zeros(length, length, dtype=hidden.dtype, device=hidden.device)
            causal = causal.masked_fill(blocked, torch.finfo(hidden.dtype).min)[None, None]  # (1, 1, L', L')
            for block in self.blocks:
                hidden = block(hidden, causal, is_causal=True)
            tokens = self.projection(self.norm(hidden))  # (B, L', P)
            end = (mask.sum(1) - 1).clamp_min(0)  # (B,) the end-of-text position
            return tokens[torch.arange(len(tokens), device=tokens.device), end], tokens, mask

    class Image(TowerTop):
        """Blocks over CLS and patches; pooled is the projected CLS."""

        @staticmethod
        def parts(model):
            vision = model.vision_model
            return vision.encoder.layers, vision.post_layernorm, model.visual_projection, vision.config

        def forward(self, hidden, mask):
            tokens = self.projection(self.norm(self.run_blocks(hidden, None)))  # (B, M, P)
            return tokens[:, 0], tokens, None


@register_tops("siglip")
class SiglipTops:
    class Text(TowerTop):
        """Blocks without an attention mask (as SigLIP was trained); pooled at the last position."""

        @staticmethod
        def parts(model):
            text = model.text_model
            return text.encoder.layers, text.final_layer_norm, text.head, text.config

        def forward(self, hidden, mask):
            tokens = self.projection(self.norm(self.run_blocks(hidden, None)))  # (B, L, P)
            return tokens[:, -1], tokens, mask

    class Image(TowerTop):
        """Blocks over the patches; pooled by the tower's attention-pooling head."""

        @staticmethod
        def parts(model):
            vision = model.vision_model
            return vision.encoder.layers, vision.post_layernorm, vision.head, vision.config

        def forward(self, hidden, mask):
            tokens = self.norm(self.run_blocks(hidden, None))  # (B, M, P): already the joint width
            return self.projection(tokens), tokens, None


def copy_top(tower: type[TowerTop], model: nn.Module, k: int, adapter: str, lora_rank: int) -> TowerTop:
    """A trainable fp32 copy of ``model``'s last ``k`` blocks of one tower, its norm and projection."""
    blocks, norm, projection, config = tower.parts(model)
    top = tower(copy.deepcopy(blocks[-k:]), copy.deepcopy(norm), copy.deepcopy(projection), config).float()
    top.requires_grad_(adapter == "full")
    if adapter == "lora":
        import peft

        # Adapters start at zero (LoRA's B = 0), so training starts from the frozen copy's features.
        # lora_alpha = rank: the adapters' update is scaled by 1 whatever the rank.
        peft.inject_adapter_in_model(peft.LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=LORA_TARGETS),
                                     top.blocks)
    return top


def keep_rows(pooled: torch.Tensor) -> torch.Tensor:
    """(B, 1) 1.0 where the cached pooled features are real, 0.0 for a missing modality (all zeros)."""
    return pooled.any(-1, keepdim=True).to(pooled.dtype)


class TopLayersModel(nn.Module):
    """A fusion head over the features that its own copies of the top k blocks compute.

    A missing modality (a missing file, or modality dropout) is all-zero pooled features everywhere in
    msc; its computed features are zeroed too, so the head sees what it sees without top layers.
    """

    uses_tokens = False  # the cached token features are not read: the tops compute them

    def __init__(self, text_top: TowerTop, image_top: TowerTop, head: FusionHead, hidden_layers: int):
        super().__init__()
        self.text_top, self.image_top, self.head = text_top, image_top, head
        self.hidden_layers = hidden_layers  # k

    @classmethod
    def from_backbone(cls, backbone: "Backbone", k: int, adapter: str, lora_rank: int,
                      head: FusionHead) -> "TopLayersModel":
        text, image = FAMILY_TOPS[backbone.family]
        return cls(copy_top(text, backbone.model, k, adapter, lora_rank),
                   copy_top(image, backbone.model, k, adapter, lora_rank), head, k)

    def features(self, batch: FeatureBatch) -> FeatureBatch:
        """The head's input computed from ``batch.text_hidden`` and ``batch.image_hidden``."""
        if batch.text_hidden is None or batch.image_hidden is None:
            raise ValueError(f"this model trains {self.hidden_layers} top blocks and reads hidden states: build its "
                             f"batches with cache.batch(rows, hidden_layers={self.hidden_layers})")
        text_pooled, text_tokens, text_mask = self.text_top(batch.text_hidden, batch.text_mask)
        image_pooled, image_tokens, _ = self.image_top(batch.image_hidden, None)
        text_keep, image_keep = keep_rows(batch.text_pooled), keep_rows(batch.image_pooled)  # (B, 1)
        return FeatureBatch(text_pooled=text_pooled * text_keep, image_pooled=image_pooled * image_keep,
                            text_tokens=text_tokens * text_keep[:, :, None], text_mask=text_mask,
                            image_tokens=image_tokens * image_keep[:, :, None])

    def forward(self, batch: FeatureBatch) -> torch.Tensor:  # -> logits (B, classes)
        return self.head(self.features(batch))

    def saved_state(self) -> dict[str, torch.Tensor]:
        """What the logged model keeps: the head and every trained parameter of the tops (all of
        them with ``full``, the adapters alone with ``lora``)."""
        trained = {name: value for name, value in self.named_parameters() if value.requires_grad}
        return {**trained, **{f"head.{name}": value for name, value in self.head.state_dict().items()}}

    def load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        expected = set(self.saved_state())
        if set(state) != expected:
            raise ValueError(f"the weights hold {sorted(set(state) - expected)[:3]} and lack "
                             f"{sorted(expected - set(state))[:3]}: they belong to another model")
        self.load_state_dict(state, strict=False)
