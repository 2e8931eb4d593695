"""Backbone families: each runs the same stages, and its served model computes the cached features.

Every family gets a tiny random backbone from ``python -m src.sample --backbone-family NAME``.
"""

import json

import numpy as np
import pytest
import torch

from msc.core.errors import UserError
from msc.data.dataset import load_dataset
from msc.data.images import open_image
from msc.data.text import decode_text
from msc.features.build import featurize
from msc.model.backbone import BACKBONE_FAMILIES, load_backbone
from msc.model.pyfunc import encode_inputs
from msc.model.tiny import FAMILIES
from src import sample
from tests.helpers import TEST_SHAPE, cache_sections, make_config

OTHER_FAMILIES = [family for family in FAMILIES if family != "clip"]  # CLIP's own: tests/integration/test_serving.py


def tiny_backbone_config(folder, family: str, data_root):
    """A tiny random backbone of ``family`` in ``folder`` and the config for it on ``data_root``,
    no augmented views."""
    assert sample.main(["--no-data", "--backbone-family", family, "--backbone-shape", TEST_SHAPE,
                        "--backbone-out", str(folder / "backbone")]) == 0
    return make_config(data_root, folder / "backbone", folder / "features", {"features.augment_views": 0})


@pytest.fixture(scope="module", params=OTHER_FAMILIES)
def family_config(request, tmp_path_factory, small_sample_root):
    return tiny_backbone_config(tmp_path_factory.mktemp(request.param), request.param, small_sample_root)


def test_every_family_of_the_sample_is_registered():
    assert set(FAMILIES) <= set(BACKBONE_FAMILIES)


def test_the_served_features_equal_the_cached_ones(family_config):
    """Parity: the pyfunc's preprocessing of raw files reproduces what featurize cached."""
    cache, _ = featurize(*cache_sections(family_config))
    dataset = load_dataset(family_config.data.source)
    rows = np.array([0, 3, 7, len(dataset.labelled) + 1])  # labelled and test rows
    samples = [dataset.samples[r] for r in rows]
    backbone = load_backbone(family_config.model.backbone, device="cpu")
    batch = encode_inputs(backbone, [decode_text(s.text_path.read_bytes())[0] for s in samples],
                          [backbone.preprocess_image(open_image(s.image_path)) for s in samples],
                          family_config.features.max_text_tokens)
    cached = cache.batch(rows, tokens=True)
    for name in ("text_pooled", "image_pooled", "image_tokens"):
        np.testing.assert_allclose(getattr(batch, name).numpy(), getattr(cached, name).numpy(), atol=2e-3)
    # The cache's batch is trimmed to its longest real text (padding is masked out of every head);
    # the served batch keeps the family's padding, which holds no real token.
    length = cached.text_mask.shape[1]
    real = batch.text_mask.numpy()
    assert np.array_equal(real[:, :length], cached.text_mask.numpy()) and not real[:, length:].any()
    real = real[:, :length]
    np.testing.assert_allclose(batch.text_tokens.numpy()[:, :length][real], cached.text_tokens.numpy()[real], atol=2e-3)


def test_siglip_pads_every_text_to_its_trained_length(family_config):
    """SigLIP pools the last position: a text's features must not depend on the batch it is in."""
    backbone = load_backbone(family_config.model.backbone, device="cpu")
    if backbone.causal_text:
        pytest.skip("a causal family may pad to the batch's longest")
    alone, together = (backbone.tokenize(texts, 8) for texts in (["sad"], ["sad", "so happy love great today"]))
    assert alone["input_ids"].shape[1] == together["input_ids"].shape[1] == 64  # max_text_tokens does not apply
    with torch.inference_mode():
        first = backbone.encode_text(alone["input_ids"], alone["attention_mask"])[0][0]
        second = backbone.encode_text(together["input_ids"], together["attention_mask"])[0][0]
    torch.testing.assert_close(first, second)


def test_an_unknown_model_type_is_a_sentence(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UserError, match="model_type 'bert'.*clip, siglip"):
        load_backbone(str(tmp_path), device="cpu")


# The study may also tune trainable top layers (msc/model/top_layers.py): k of K = 2 cached, full or LoRA.
