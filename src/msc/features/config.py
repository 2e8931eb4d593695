"""params.yaml's ``features`` section: how the feature cache is built (views, batches, cached layers)."""

from __future__ import annotations

from dataclasses import dataclass

from msc.core.settings import require


@dataclass(frozen=True)
class FeaturesConfig:
    dir: str = "features"  # the cache folder (a DVC output)
    augment_views: int = 4  # augmented views cached per labelled image; 0 = none
    batch_size: int = 64  # backbone batch size
    num_workers: int = 2  # DataLoader processes that read and decode images
    max_text_tokens: int = 77  # CLIP's context length; longer tweets are truncated
    seed: int = 0  # seeds the augmentations, so a rebuild gives the same cache
    text_augment_views: int = 0  # augmented texts cached per labelled tweet (word dropout, swaps, tags); 0 = none
    top_layers: int = 0  # K: also cache the hidden states entering each tower's last K blocks (train.top_layers)
    # False: a pooled-only cache, without the per-token and per-patch states that only the token heads
    # (early, cross_attention) read; most of a post's bytes (BENCHMARKS.md, "A pooled-only cache").
    token_states: bool = True

    def __post_init__(self) -> None:
        require(self.top_layers >= 0, "features.top_layers", self.top_layers, "must be 0 or more")
        require(self.augment_views >= 0, "features.augment_views", self.augment_views, "must be 0 or more")
        require(self.text_augment_views >= 0, "features.text_augment_views", self.text_augment_views,
                "must be 0 or more")
        require(self.batch_size >= 1, "features.batch_size", self.batch_size, "must be at least 1")
        require(self.num_workers >= 0, "features.num_workers", self.num_workers, "must be 0 or more")
        require(self.max_text_tokens >= 2, "features.max_text_tokens", self.max_text_tokens,
                "must be at least 2 (start and end token)")
