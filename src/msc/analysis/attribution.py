"""What drove the tuned head's holdout predictions, for the report.

- Every holdout row: the modality attribution of msc/model/explain.py (the Shapley split of the
  predicted class's log-probability between text and image), on the cached features.
- The token heads (``early``, ``cross_attention``): integrated gradients (Captum) over the text-token
  and image-patch features of the most confident errors, from the missing-modality zeros to the real
  features, for the predicted class. A pooled head has no tokens or patches to attribute to.

Shapes: L text tokens, M image tokens (CLIP: CLS first, then g x g patches; SigLIP: g x g patches), P width.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from msc.config import Config
from msc.data.posts import Sample
from msc.data.text import read_post_text
from msc.features.cache import FeatureCache
from msc.model.backbone import load_backbone
from msc.model.batch import FeatureBatch
from msc.model.explain import modality_attribution
from msc.train.loop import eval_batches

IG_STEPS = 32  # integration steps: the attributions of a case sum to f(x) - f(0) within about 1 %


def holdout_attribution(head: torch.nn.Module, cache: FeatureCache, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(attr_text (n,), attr_image (n,)) of ``head`` on ``rows``' clean cached features, uncalibrated."""
    parts = [modality_attribution(head, batch)[1:] for batch in eval_batches(head, cache, rows)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def token_features(head: torch.nn.Module, batch: FeatureBatch) -> tuple[torch.nn.Module, FeatureBatch]:
    """The module that reads token features, and its input: with trainable top layers, the head inside
    them over the features they compute."""
    if head.hidden_layers:
        with torch.no_grad():
            return head.head, head.features(batch)
    return head, batch


def integrated_gradients(head: torch.nn.Module, batch: FeatureBatch, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Per real text token (L_real,) and per image token (M,): the integrated gradients of the
    ``target`` logit, summed over the feature width, from all-zero features to ``batch`` (one row)."""
    from captum.attr import IntegratedGradients

    reader, features = token_features(head, batch)

    def logits(text_tokens, image_tokens, text_pooled, image_pooled, text_mask):
        return reader(FeatureBatch(text_pooled=text_pooled, image_pooled=image_pooled, text_tokens=text_tokens,
                                   text_mask=text_mask, image_tokens=image_tokens))

    inputs = (features.text_tokens, features.image_tokens)  # (1, L, P), (1, M, P)
    text, image = IntegratedGradients(logits).attribute(
        inputs, baselines=tuple(torch.zeros_like(x) for x in inputs), target=target, n_steps=IG_STEPS,
        additional_forward_args=(features.text_pooled, features.image_pooled, features.text_mask))
    real = features.text_mask[0]
    return text[0].sum(-1)[real].detach().cpu().numpy(), image[0].sum(-1).detach().cpu().numpy()


def patch_grid(image_attr: np.ndarray) -> tuple[int, np.ndarray]:
    """(g, (g*g,) patch attributions): the image tokens without CLIP's CLS when there is one."""
    grid = math.isqrt(len(image_attr))
    if grid * grid != len(image_attr):  # CLS first, then the patches
        image_attr = image_attr[1:]
        grid = math.isqrt(len(image_attr))
    return grid, image_attr


def token_strings(tokenizer, text: str, max_tokens: int, count: int) -> list[str]:
    """The first ``count`` tokens of ``text`` as the backbone's tokenizer splits it, readable."""
    ids = tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"]
    tokens = [tokenizer.convert_tokens_to_string([token]).strip() or "·"
              for token in tokenizer.convert_ids_to_tokens(ids)]
    return (tokens + ["?"] * count)[:count]


def evidence(config: Config, head: torch.nn.Module, cache: FeatureCache, cases: list[tuple[int, Sample]],
             predicted: list[int]) -> list[dict]:
    """Token and patch attributions of each (row, sample) case, for its ``predicted`` class."""
    tokenizer = load_backbone(config.model.backbone, config.model.revision, "cpu", "fp32",
                              config.model.family).processor.tokenizer
    out = []
    for (row, sample), target in zip(cases, predicted):
        batch = cache.batch(np.array([row]), tokens=head.uses_tokens, hidden_layers=head.hidden_layers)
        text_attr, image_attr = integrated_gradients(head, batch, target)
        grid, patches = patch_grid(image_attr)
        text = read_post_text(sample, config.data.text_encoding)[0]
        out.append({"guid": sample.guid, "image_path": "" if sample.image_path is None else str(sample.image_path),
                    "predicted": target,
                    "tokens": token_strings(tokenizer, text, config.features.max_text_tokens, len(text_attr)),
                    "token_attr": text_attr.tolist(), "patch_grid": grid, "patch_attr": patches.tolist()})
    return out
