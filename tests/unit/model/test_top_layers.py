"""Trainable top layers on cached hidden states (train.top_layers, msc/model/top_layers.py).

A cache with features.top_layers: 2 over the small sample; models with k = 1 and 2 train on it, in
full and with LoRA adapters, and load back from MLflow to predict from raw files.
"""

from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from msc.core.errors import UserError
from msc.data.dataset import load_dataset
from msc.data.text import decode_text
from msc.features.build import featurize
from msc.features.splits import load_splits
from msc.model.backbone import load_backbone
from msc.model.batch import FeatureBatch
from msc.model.tiny import FAMILIES, write_backbone
from msc.model.top_layers import FAMILY_TOPS, copy_top
from msc.track.inference import load_model
from msc.track.logged_model import log_trial_model, logged_head
from msc.track.store import setup_mlflow
from msc.train.holdout import cached_head
from msc.train.loop import build_model, frozen_backbone, predict_proba, train_head
from tests.helpers import TEST_SHAPE, cache_sections, committed_params_text, make_config

CACHED_LAYERS = 2  # K; the tiny backbones have 2 blocks per tower


@pytest.fixture(scope="module")
def top_config(tmp_path_factory, small_sample_root, tiny_clip):
    folder = tmp_path_factory.mktemp("top-layers")
    return make_config(small_sample_root, tiny_clip, folder / "features",
                       {"features.augment_views": 1, "features.top_layers": CACHED_LAYERS, "train.epochs": 2,
                        "data.splits_dir": str(folder / "splits")})


@pytest.fixture(scope="module")
def top_cache(top_config):
    from msc.data.split import write_splits

    cache, _ = featurize(*cache_sections(top_config))
    write_splits(top_config.data.source, top_config.data.splits_dir, top_config.data.split_rule)
    return cache


@pytest.fixture(scope="module", params=FAMILIES)
def family_backbone(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param) / "backbone"
    write_backbone(folder, TEST_SHAPE, seed=0, family=request.param)
    return load_backbone(str(folder), device="cpu", precision="fp32")


@pytest.mark.parametrize("k", [1, 2])
def test_the_copied_top_blocks_reproduce_the_backbone_features(family_backbone, k):
    """Run from the hidden states entering the last k blocks, a tower's top returns the pooled and
    token features the whole backbone returns, for every family."""
    backbone = family_backbone
    encoded = backbone.tokenize(["so happy today love", "sad"], 77)
    pixels = torch.from_numpy(np.stack([backbone.preprocess_image(Image.new("RGB", (60, 90), color))
                                        for color in ((200, 30, 30), (10, 120, 240))]))
    text_top, image_top = (copy_top(tower, backbone.model, k, "full", 8) for tower in FAMILY_TOPS[backbone.family])
    with torch.no_grad():
        text = backbone.encode_text(encoded["input_ids"], encoded["attention_mask"], hidden_layers=k)
        image = backbone.encode_image(pixels, hidden_layers=k)
        mask = encoded["attention_mask"].bool()
        pooled, tokens, top_mask = text_top(text.hidden[k - 1], mask)
        torch.testing.assert_close(pooled, text.pooled, atol=1e-5, rtol=1e-4)
        real = top_mask  # the causal family trims to the longest text; every real token is kept
        torch.testing.assert_close(tokens[real], text.tokens[:, : real.shape[1]][real], atol=1e-5, rtol=1e-4)
        pooled, tokens, _ = image_top(image.hidden[k - 1], None)
        torch.testing.assert_close(pooled, image.pooled, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(tokens, image.tokens, atol=1e-5, rtol=1e-4)
    assert len(text_top.blocks) == len(image_top.blocks) == k


def test_k0_is_the_frozen_path_bit_for_bit(top_config, top_cache):
    """Caching hidden states changes no cached feature, and k = 0 trains the head alone on them."""
    k0_config = replace(top_config, features=replace(top_config.features, top_layers=0, dir=str(
        Path(top_config.features.dir).with_name("features-k0"))))
    plain, _ = featurize(*cache_sections(k0_config))
    for name in ("text_pooled", "text_tokens", "text_mask", "image_pooled", "image_tokens", "aug_pooled", "aug_tokens"):
        assert np.array_equal(plain.array(name), top_cache.array(name)), name
    rows = np.arange(top_cache.n_labelled)
    train = replace(top_config.train, fusion="cross_attention")
    with_hidden, without = (train_head(c, rows[:40], rows[40:], train) for c in (top_cache, plain))
    assert type(with_hidden.head).__name__ == "CrossAttentionFusion"
    assert np.array_equal(predict_proba(with_hidden.head, top_cache, rows), predict_proba(without.head, plain, rows))


@pytest.mark.parametrize("k,adapter", [(1, "full"), (2, "full"), (2, "lora")])
def test_after_a_step_only_the_top_blocks_and_the_head_have_gradients(top_config, top_cache, k, adapter):
    train = replace(top_config.train, top_layers=k, top_layers_adapter=adapter, lora_rank=4, fusion="cross_attention")
    model = build_model(train, top_cache)
    rows = np.arange(16)
    batch = top_cache.batch(rows, hidden_layers=k)
    torch.nn.functional.cross_entropy(model(batch), torch.from_numpy(top_cache.labels[rows])).backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {name for name, p in model.named_parameters() if p.requires_grad}
    assert {name for name in with_grad if name.startswith("head.")} == {f"head.{n}" for n, _ in model.head.named_parameters()}
    top_names = {name for name in with_grad if not name.startswith("head.")}
    backbone = frozen_backbone(str(top_config.model.backbone), "main", None)
    if adapter == "full":
        # Every weight of each tower's k blocks, its final norm and its projection; nothing else.
        expected = sum(p.numel() for tower in FAMILY_TOPS["clip"] for part in tower.parts(backbone.model)[:3]
                       for p in (part[-k:] if isinstance(part, torch.nn.ModuleList) else part).parameters())
        assert sum(p.numel() for n, p in model.named_parameters() if n in top_names) == expected
    else:
        assert top_names and all(".lora_A." in name or ".lora_B." in name for name in top_names)
    # The backbone's own blocks, the frozen lower ones included, get no gradient and are not in the model.
    assert sum(p.grad is not None for p in backbone.model.parameters()) == 0
    assert len(model.text_top.blocks) == len(model.image_top.blocks) == k


def test_k_above_the_cached_layers_is_a_sentence(top_config, top_cache):
    with pytest.raises(UserError, match="features.top_layers"):
        build_model(replace(top_config.train, top_layers=CACHED_LAYERS + 1), top_cache)


@pytest.mark.parametrize("k,adapter", [(1, "full"), (2, "lora")])
def test_the_loaded_model_reproduces_the_training_time_holdout_probabilities(
        top_config, top_cache, k, adapter, tmp_path, monkeypatch):
    """Parity: from raw files, through the frozen lower blocks and its own top blocks, the logged
    model gives the probabilities scored on the cached hidden states during training."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    splits = load_splits(top_config.data, top_cache)
    train = replace(top_config.train, top_layers=k, top_layers_adapter=adapter, lora_rank=4, fusion="early")
    result = train_head(top_cache, splits.train, splits.val, train)
    expected = predict_proba(result.head, top_cache, splits.holdout)
    setup_mlflow()
    with mlflow.start_run():
        info = log_trial_model(result.head, train, top_cache.dim, str(top_config.model.backbone), "main",
                               top_config.features.max_text_tokens, top_cache.label_names)
    # Registration scores it from head.json and weights alone, its blocks copied from training's backbone.
    spec, weights = logged_head(info.model_uri)
    np.testing.assert_allclose(predict_proba(cached_head(spec, weights, top_cache), top_cache, splits.holdout), expected,
                               atol=1e-6)
    folder = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    with safe_open(str(folder / "artifacts" / "head.safetensors"), "pt") as weights:
        saved = list(weights.keys())
    if adapter == "lora":  # the adapters and the head; no copy of a block's own weights
        assert all(name.startswith("head.") or ".lora_" in name for name in saved)
    else:
        assert any(name.startswith("image_top.blocks.") and name.endswith("mlp.fc1.weight") for name in saved)
    samples = [load_dataset(top_config.data.source).samples[row] for row in splits.holdout]
    frame = pd.DataFrame({"text": [decode_text(s.text_path.read_bytes())[0] for s in samples],
                          "image": [str(s.image_path) for s in samples]})
    served = load_model(info.model_uri).predict(frame)
    np.testing.assert_allclose(served[["p_positive", "p_neutral", "p_negative"]].to_numpy(), expected, atol=2e-3)
    assert not np.allclose(expected, expected.mean(0))  # a real spread of probabilities, not a constant


def test_a_missing_modality_stays_zero_through_the_top_layers(top_config, top_cache):
    model = build_model(replace(top_config.train, top_layers=1), top_cache).eval()
    batch = top_cache.batch(np.arange(4), hidden_layers=1)
    batch.text_pooled[1] = 0.0  # row 1 has lost its text, as under modality dropout or a missing file
    features = model.features(batch)
    assert not features.text_pooled[1].any() and not features.text_tokens[1].any()
    assert features.text_pooled[0].any() and features.image_pooled[1].any()
    assert isinstance(features, FeatureBatch)


@pytest.mark.parametrize("train_section", [{"top_layers": 1}, {}])
def test_top_layers_above_the_cached_ones_stop_at_load(tmp_path, train_section):
    """Set, or reachable by the study's search space, a k above K is a sentence when params load."""
    import yaml

    from msc.config import load_config

    params = yaml.safe_load(committed_params_text())
    params["train"].update(train_section)
    params["tune"]["search_space"]["train"]["top_layers"] = {"type": "int", "low": 0, "high": 1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(UserError, match=r"train.top_layers.*features.top_layers \(0\)"):
        load_config(tmp_path / "params.yaml")
    params["features"]["top_layers"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert load_config(tmp_path / "params.yaml").features.top_layers == 1
