"""What a fusion head reads: pooled and token features of a batch, from the cache or from raw inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class FeatureBatch:
    """What a fusion head reads. Token fields are None for heads that only use pooled features."""

    text_pooled: torch.Tensor  # (B, P)
    image_pooled: torch.Tensor  # (B, P)
    text_tokens: torch.Tensor | None = None  # (B, L, P)
    text_mask: torch.Tensor | None = None  # (B, L) bool, True = real token
    image_tokens: torch.Tensor | None = None  # (B, M, P)
    # With train.top_layers k > 0 (msc/model/top_layers.py): the hidden states entering each tower's
    # last k blocks, from which the model computes the fields above. D_t, D_v: the towers' widths.
    text_hidden: torch.Tensor | None = None  # (B, L, D_t), masked by text_mask
    image_hidden: torch.Tensor | None = None  # (B, M, D_v)


def drop_modality(batch: FeatureBatch, text_rows: np.ndarray, image_rows: np.ndarray) -> FeatureBatch:
    """Zero the text features of ``text_rows`` and the image features of ``image_rows``, in place.

    This is how a missing modality looks to a head, in training (modality dropout) and in
    prediction (an unreadable or missing file): all zeros, with the text mask unchanged.
    """
    for rows, fields in ((text_rows, ("text_pooled", "text_tokens")), (image_rows, ("image_pooled", "image_tokens"))):
        if len(rows):
            for name in fields:
                values = getattr(batch, name)
                if values is not None:
                    values[rows] = 0.0
    return batch
