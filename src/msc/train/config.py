"""params.yaml's ``train`` section: one head's training, checked against the heads ``msc.model`` registers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from msc.core.errors import UserError
from msc.core.settings import require
from msc.model.heads import ATTENTION_HEADS, HEADS


@dataclass(frozen=True)
class TrainConfig:
    fusion: str = "late"  # a head registered in msc/model/heads.py (HEADS): text, image, early, late, ...
    hidden_dim: int = 256  # width of the fusion layers and the classifier
    dropout: float = 0.2  # dropout probability in the head's layers
    lr: float = 0.001  # AdamW peak learning rate, cosine-decayed to 0
    weight_decay: float = 0.01  # AdamW weight decay
    epochs: int = 10  # at most this many; early stopping (patience) may end sooner
    batch_size: int = 64  # training rows per step
    patience: int = 3  # epochs without a better select_metric before stopping
    class_weight_power: float = 0.0  # loss weight = (inverse class frequency) ** power
    class_boost: dict[str, float] = field(default_factory=dict)  # label -> extra factor on its class weight
    neutral_boost: float = 1.0  # the course's key: class_boost's factor of the label "neutral"
    modality_dropout: float = 0.1  # share of training samples that lose their text or their image
    use_augmented_views: bool = True  # sample one of the cache's K augmented views per image and epoch
    use_text_views: bool = True  # likewise for the cache's augmented texts (features.text_augment_views)
    # Training autocast. auto: on a GPU bf16 where supported, else fp16 with a gradient scaler; on a
    # CPU bf16 for the token heads where it is native. Prediction always runs in fp32.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"  # where heads train and the cache lives: auto (cuda when present) | cpu | cuda | cuda:N
    # The one selection metric: early stopping, the kept epoch and the study's objective.
    select_metric: Literal["val_weighted_f1", "val_macro_f1", "val_accuracy", "val_macro_recall",
                           "val_macro_precision"] = "val_weighted_f1"
    seed: int = 0  # seeds the head's initial weights, batch order, views and modality dropout
    # k <= features.top_layers: train copies of each tower's last k blocks with the head (msc/model/top_layers.py);
    # 0 = the frozen backbone. Their learning rate is lr * top_layers_lr_scale; the adapter is full
    # (every weight of the blocks, their final norm and projection) or lora (peft adapters of rank lora_rank).
    top_layers: int = 0
    top_layers_lr_scale: float = 0.1  # the top blocks' learning rate is lr times this
    top_layers_adapter: Literal["full", "lora"] = "full"  # full: every weight of the k blocks; lora: peft adapters
    lora_rank: int = 8  # rank of the LoRA adapters (top_layers_adapter: lora)

    def __post_init__(self) -> None:
        require(self.top_layers >= 0, "train.top_layers", self.top_layers, "must be 0 or more")
        require(self.top_layers_lr_scale > 0, "train.top_layers_lr_scale", self.top_layers_lr_scale, "must be above 0")
        require(self.lora_rank >= 1, "train.lora_rank", self.lora_rank, "must be at least 1")
        require(self.fusion in HEADS, "train.fusion", self.fusion, f"must be one of {', '.join(HEADS)}")
        require(self.hidden_dim >= ATTENTION_HEADS and self.hidden_dim % ATTENTION_HEADS == 0, "train.hidden_dim",
                self.hidden_dim, f"must be a positive multiple of {ATTENTION_HEADS}, the attention heads of the token heads")
        require(0 <= self.dropout < 1, "train.dropout", self.dropout, "must be in [0, 1)")
        require(self.lr > 0, "train.lr", self.lr, "must be above 0")
        require(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "must be 0 or more")
        require(self.epochs >= 1, "train.epochs", self.epochs, "must be at least 1")
        require(self.batch_size >= 1, "train.batch_size", self.batch_size, "must be at least 1")
        require(self.patience >= 1, "train.patience", self.patience, "must be at least 1")
        require(self.class_weight_power >= 0, "train.class_weight_power", self.class_weight_power, "must be 0 or more")
        require(self.neutral_boost > 0, "train.neutral_boost", self.neutral_boost, "must be above 0")
        require(all(isinstance(label, str) and isinstance(factor, (int, float)) and not isinstance(factor, bool)
                    and factor > 0 for label, factor in self.class_boost.items()), "train.class_boost",
                self.class_boost, "must map labels to factors above 0 (quote a label YAML reads as a boolean: 'yes')")
        require(self.neutral_boost == 1 or "neutral" not in self.class_boost, "train.neutral_boost", self.neutral_boost,
                "and train.class_boost's neutral both set the neutral factor; keep one")
        require(0 <= self.modality_dropout < 1, "train.modality_dropout", self.modality_dropout, "must be in [0, 1)")
        require(self.device in ("auto", "cpu", "cuda") or self.device.removeprefix("cuda:").isdigit(), "train.device",
                self.device, "must be auto, cpu, cuda or cuda:N")

    def class_factors(self, labels: tuple[str, ...]) -> list[float]:
        """Each class's extra loss-weight factor, in class order: ``class_boost``'s, and ``neutral_boost``
        for a label "neutral"; a UserError for a factor of a label the data does not have."""
        boost = {**self.class_boost, **({"neutral": self.neutral_boost} if self.neutral_boost != 1 else {})}
        unknown = sorted(set(boost) - set(labels))
        if unknown:
            key = "train.class_boost" if unknown[0] in self.class_boost else "train.neutral_boost"
            raise UserError(f"key '{key}' sets a factor for label {unknown[0]!r}, which the data does not have (its "
                            f"labels: {', '.join(labels)}); remove it, or use one of those labels")
        return [float(boost.get(label, 1.0)) for label in labels]
