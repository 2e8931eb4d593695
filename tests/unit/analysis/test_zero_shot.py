"""The zero-shot baseline: the backbone ranks the classes with its prompts and no training."""

import numpy as np
import pytest
import torch

from msc.analysis.variants import summary_row
from msc.analysis.zero_shot import zero_shot, zero_shot_probs
from msc.config import with_overrides
from msc.core.errors import UserError


def test_each_modality_votes_for_its_nearest_class_and_a_missing_one_abstains():
    classes = torch.eye(3, 4)  # (3, P=4): class c points along axis c
    text = torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])  # nearest: neutral, then negative
    image = torch.tensor([[0.0, 3.0, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0]])  # the second post has no image (zeros)
    probs = zero_shot_probs(text, image, classes, scale=10.0)
    assert probs.sum(1).tolist() == pytest.approx([1.0, 1.0])
    assert probs.argmax(1).tolist() == [1, 2]
    # A missing image adds a uniform distribution: the text alone decides, at half its confidence.
    alone = torch.softmax(10.0 * classes[2] @ classes.T, dim=-1)
    assert probs[1].tolist() == pytest.approx(((alone + 1 / 3) / 2).tolist())


def test_the_zero_shot_row_has_one_run_and_a_bootstrap_interval(config, cache, splits):
    result = zero_shot(config, cache, splits.holdout)
    again = zero_shot(config, cache, splits.holdout)
    assert np.array_equal(result.predictions[0], again.predictions[0]), "no training, no seed: deterministic"
    row = summary_row(result, cache.labels[splits.holdout], cache.label_names)
    assert row["variant"] == "zero_shot" and row["kind"] == "baseline" and row["seeds"] == 1
    assert row["weighted_f1_ci_low"] <= row["weighted_f1"] <= row["weighted_f1_ci_high"]


def test_a_label_without_prompts_gets_prompts_from_its_name(config):
    partial = with_overrides(config, {"ablation.zero_shot_prompts": {"positive": ["good"], "negative": ["bad"]}})
    assert partial.ablation.prompts_for(("positive", "neutral", "negative")) == {
        "positive": ["good"], "neutral": ["a neutral photo", "a neutral post"], "negative": ["bad"]}
    with pytest.raises(UserError, match="ablation.zero_shot_prompts"):
        with_overrides(config, {"ablation.zero_shot_prompts": {"positive": ["good"], "neutral": [], "negative": ["x"]}})
