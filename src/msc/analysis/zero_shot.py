"""The zero-shot baseline: the backbone ranks the classes with no training at all.

Each class's prompts (``ablation.zero_shot_prompts``) go through the backbone's text tower; their
L2-normalised pooled embeddings are averaged per class and normalised again (CLIP's prompt ensembling).
A post's cached image embedding and its tweet's cached text embedding are each compared with the class
embeddings, one per label (a label without prompts gets two made from its name): cosine similarity times
the backbone's learned logit scale, softmax over the classes. The two distributions are averaged with
equal weights, since before any training nothing says which modality to trust more. A missing modality
is cached as zeros: its similarities are 0 for every class, so it adds a uniform distribution and the
other decides. The cached embeddings are the ones the backbone itself computes, so no image or tweet is
encoded again; only the few prompts are.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from msc.analysis.variants import Variant, VariantResult
from msc.config import Config
from msc.features.cache import FeatureCache
from msc.model.backbone import Backbone
from msc.model.onnx_towers import runtime_backbone
from msc.train.metrics import classification_metrics


def class_embeddings(backbone: Backbone, prompts: dict[str, list[str]], max_tokens: int) -> torch.Tensor:
    """(C, P) unit vectors in the joint space, one per class, in ``prompts``' order (the label set's)."""
    rows = []
    with torch.inference_mode():
        for label in prompts:
            tokens = backbone.tokenize(prompts[label], max_tokens)
            pooled = backbone.encode_text(tokens["input_ids"], tokens["attention_mask"]).pooled  # (M, P), M prompts
            rows.append(F.normalize(F.normalize(pooled.float().cpu(), dim=-1).mean(0), dim=0))  # (P,)
    return torch.stack(rows)


def zero_shot_probs(text: torch.Tensor, image: torch.Tensor, classes: torch.Tensor, scale: float) -> torch.Tensor:
    """(n, P) pooled text and image embeddings and (C, P) class embeddings -> (n, C) probabilities,
    the mean of the text's and the image's softmax over scaled cosine similarities."""
    text_probs, image_probs = (torch.softmax(scale * F.normalize(x.float(), dim=-1) @ classes.T, dim=-1)
                               for x in (text, image))
    return (text_probs + image_probs) / 2


def zero_shot(config: Config, cache: FeatureCache, rows: np.ndarray) -> VariantResult:
    """The ``zero_shot`` ablation row on ``rows`` (the holdout): deterministic, so one run.

    The backbone is the cache's own (``open_cache`` refused a cache built with another), loaded for
    its text tower and logit scale, run as the cache's features were (model.runtime)."""
    model = config.model
    backbone = runtime_backbone(model.backbone, model.revision, model.device, model.precision, model.family,
                                model.runtime, cache.manifest.backbone_identity)
    classes = class_embeddings(backbone, config.ablation.prompts_for(cache.label_names), config.features.max_text_tokens)
    batch = cache.batch(rows)
    # The learned temperature (CLIP's is 100 once trained): it sets how sure each modality is, and so
    # its weight in the average.
    probs = zero_shot_probs(batch.text_pooled.cpu(), batch.image_pooled.cpu(), classes, backbone.logit_scale)
    predictions = probs.argmax(1).numpy()
    scores = classification_metrics(cache.labels[rows], predictions, cache.label_names)
    return VariantResult(Variant("zero_shot", "baseline"), scores=[scores], predictions=[predictions])
