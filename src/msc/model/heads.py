"""Fusion heads over cached CLIP features, selected by name; all end in the same Classifier.

Shapes: B batch, P joint CLIP width, L text tokens, M image tokens (CLS + patches), H hidden_dim,
C classes (the dataset's label set).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from msc.model.batch import FeatureBatch

ATTENTION_HEADS = 4  # heads of the token heads' attention layers; TrainConfig checks hidden_dim is a multiple
HEADS: dict[str, type["FusionHead"]] = {}  # name -> class: the one list of heads (config, search space, tests)


def register_head(name: str):
    """Class decorator: make a FusionHead buildable as ``train.fusion: <name>``."""
    def register(cls: type[FusionHead]) -> type[FusionHead]:
        if name in HEADS:
            raise ValueError(f"a head named {name!r} is already registered ({HEADS[name].__name__})")
        HEADS[name] = cls
        return cls

    return register


class Classifier(nn.Module):
    """Shared classification head: LayerNorm -> Linear -> GELU -> Dropout -> Linear."""

    def __init__(self, in_dim: int, hidden_dim: int, dropout: float, classes: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.LayerNorm(in_dim),  # L2-normalised CLIP features are tiny per dimension; rescale
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_dim) -> (B, C)
        return self.layers(x)


class FusionHead(nn.Module):
    """Base class. ``uses_tokens`` tells the trainer whether to load token-level features."""

    uses_tokens = False
    hidden_layers = 0  # k: a head alone reads no hidden states (msc/model/top_layers.py does)

    def forward(self, batch: FeatureBatch) -> torch.Tensor:  # -> logits (B, C)
        raise NotImplementedError

    def saved_state(self) -> dict[str, torch.Tensor]:
        """What a logged model keeps of it: every weight."""
        return self.state_dict()

    def load_saved_state(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state)


@register_head("text")
class TextHead(FusionHead):
    """Unimodal ablation: the pooled text embedding only."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float, classes: int):
        super().__init__()
        self.classifier = Classifier(dim, hidden_dim, dropout, classes)

    def forward(self, batch: FeatureBatch) -> torch.Tensor:
        return self.classifier(F.normalize(batch.text_pooled, dim=-1))


@register_head("image")
class ImageHead(FusionHead):
    """Unimodal ablation: the pooled image embedding only."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float, classes: int):
        super().__init__()
        self.classifier = Classifier(dim, hidden_dim, dropout, classes)

    def forward(self, batch: FeatureBatch) -> torch.Tensor:
        return self.classifier(F.normalize(batch.image_pooled, dim=-1))


@register_head("early")
class EarlyFusion(FusionHead):
    """One shared Transformer layer over [CLS; text tokens; image tokens] (B, 1 + L + M, H)."""

    uses_tokens = True

    def __init__(self, dim: int, hidden_dim: int, dropout: float, classes: int):
        super().__init__()
        self.text_in = nn.Linear(dim, hidden_dim)
        self.image_in = nn.Linear(dim, hidden_dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.modality = nn.Parameter(torch.zeros(2, hidden_dim))  # tells text tokens from patches
        self.encoder = nn.TransformerEncoderLayer(
            hidden_dim, ATTENTION_HEADS, dim_feedforward=2 * hidden_dim, dropout=dropout,
            batch_first=True, norm_first=True,
        )
        self.classifier = Classifier(hidden_dim, hidden_dim, dropout, classes)

    def forward(self, batch: FeatureBatch) -> torch.Tensor:
        text = self.text_in(batch.text_tokens) + self.modality[0]  # (B, L, H)
        image = self.image_in(batch.image_tokens) + self.modality[1]  # (B, M, H)
        # shape[0], not len(): an ONNX trace records len() as a constant, fixing the batch size
        cls = self.cls.expand(text.shape[0], -1, -1)  # (B, 1, H)
        sequence = torch.cat([cls, text, image], dim=1)  # (B, 1 + L + M, H)
        keep = torch.ones(sequence.shape[:2], dtype=torch.bool, device=sequence.device)
        keep[:, 1 : 1 + text.shape[1]] = batch.text_mask
        encoded = self.encoder(sequence, src_key_padding_mask=~keep)
        return self.classifier(encoded[:, 0])


@register_head("late")
class LateFusion(FusionHead):
    """Concatenated L2-normalised pooled embeddings: (B, 2P) into the classifier."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float, classes: int):
        super().__init__()
        self.classifier = Classifier(2 * dim, hidden_dim, dropout, classes)

    def forward(self, batch: FeatureBatch) -> torch.Tensor:
        fused = torch.cat([F.normalize(batch.text_pooled, dim=-1), F.normalize(batch.image_pooled, dim=-1)], dim=-1)
        return self.classifier(fused)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of (B, T, H) where mask (B, T) is True."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


@register_head("cross_attention")
class CrossAttentionFusion(FusionHead):
    """Text tokens attend to image patches and patches to text tokens, over token sequences.

    Each direction is a residual multi-head attention block; the two attended sequences are
    mean-pooled and concatenated, (B, 2H), into the classifier. Unlike attention over one
    pooled vector per modality (a softmax over a single key, which is the identity), each query
    here chooses among L or M keys.
    """

    uses_tokens = True

    def __init__(self, dim: int, hidden_dim: int, dropout: float, classes: int):
        super().__init__()
        self.text_in = nn.Linear(dim, hidden_dim)
        self.image_in = nn.Linear(dim, hidden_dim)
        self.text_to_image = nn.MultiheadAttention(hidden_dim, ATTENTION_HEADS, dropout=dropout, batch_first=True)
        self.image_to_text = nn.MultiheadAttention(hidden_dim, ATTENTION_HEADS, dropout=dropout, batch_first=True)
        self.text_norm = nn.LayerNorm(hidden_dim)
        self.image_norm = nn.LayerNorm(hidden_dim)
        self.classifier = Classifier(2 * hidden_dim, hidden_dim, dropout, classes)

    def forward(self, batch: FeatureBatch) -> torch.Tensor:
        text = self.text_in(batch.text_tokens)  # (B, L, H)
        image = self.image_in(batch.image_tokens)  # (B, M, H)
        text_attended, _ = self.text_to_image(text, image, image, need_weights=False)  # (B, L, H)
        image_attended, _ = self.image_to_text(
            image, text, text, key_padding_mask=~batch.text_mask, need_weights=False
        )  # (B, M, H)
        text = self.text_norm(text + text_attended)
        image = self.image_norm(image + image_attended)
        fused = torch.cat([masked_mean(text, batch.text_mask), image.mean(1)], dim=-1)  # (B, 2H)
        return self.classifier(fused)


@register_head("gated")
class GatedFusion(FusionHead):
    """Learned per-sample modality weights: softmax gate over projected text and image.

    The gate sees both embeddings and returns (B, 2) weights that sum to 1, so a sample whose
    image says little can lean on its text and the other way round.
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float, classes: int):
        super().__init__()
        self.text_in = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU())
        self.image_in = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU())
        self.gate = nn.Linear(2 * dim, 2)
        self.classifier = Classifier(hidden_dim, hidden_dim, dropout, classes)

    def gate_weights(self, batch: FeatureBatch) -> torch.Tensor:  # (B, 2): [text, image]
        text, image = F.normalize(batch.text_pooled, dim=-1), F.normalize(batch.image_pooled, dim=-1)
        return torch.softmax(self.gate(torch.cat([text, image], dim=-1) * text.shape[-1] ** 0.5), dim=-1)

    def forward(self, batch: FeatureBatch) -> torch.Tensor:
        text = self.text_in(F.normalize(batch.text_pooled, dim=-1) * batch.text_pooled.shape[-1] ** 0.5)
        image = self.image_in(F.normalize(batch.image_pooled, dim=-1) * batch.image_pooled.shape[-1] ** 0.5)
        weights = self.gate_weights(batch)
        fused = weights[:, :1] * text + weights[:, 1:] * image  # (B, H)
        return self.classifier(fused)


def build_head(fusion: str, dim: int, hidden_dim: int, dropout: float, classes: int) -> FusionHead:
    """The head named ``fusion`` over P = ``dim`` features, with ``classes`` outputs."""
    return HEADS[fusion](dim, hidden_dim, dropout, classes)
