"""Backbone families: each runs the same stages, and its served model computes the cached features.

Every family gets a tiny random backbone from ``python -m src.sample --backbone-family NAME``.
"""

import base64
import json
import os
import shutil
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from msc.config import with_overrides
from msc.core.errors import UserError
from msc.data.dataset import load_dataset
from msc.data.images import open_image
from msc.data.text import decode_text
from msc.features.build import featurize
from msc.model.backbone import BACKBONE_FAMILIES, load_backbone
from msc.model.pyfunc import encode_inputs
from msc.model.tiny import FAMILIES
from src import sample
from tests.conftest import cache_sections, make_config
from tests.helpers import free_port, serve_model

OTHER_FAMILIES = [family for family in FAMILIES if family != "clip"]  # CLIP's own: tests/test_serving.py


def tiny_backbone_config(folder, family: str, data_root):
    """A tiny random backbone of ``family`` in ``folder`` and the config for it on ``data_root``,
    no augmented views."""
    assert sample.main(["--no-data", "--backbone-family", family, "--backbone-out", str(folder / "backbone")]) == 0
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
TOP_LAYERS_SPACE = {"features.top_layers": 2, "tune.search_space": {
    "train.top_layers": {"type": "int", "low": 1, "high": 2},
    "train.top_layers_adapter": {"type": "categorical", "choices": ["full", "lora"]},
    "train.fusion": {"type": "categorical", "choices": ["late", "cross_attention"]}}}


@pytest.mark.integration
@pytest.mark.parametrize("family,overrides", [(family, {}) for family in FAMILIES] + [("clip", TOP_LAYERS_SPACE)],
                         ids=[*FAMILIES, "clip-top-layers"])
def test_featurize_tune_predict_and_serve(family, overrides, small_sample_root, tmp_path, monkeypatch):
    """The stages users type, on the family's backbone; the served probabilities are the ones the
    registered head gives the cached features of the same holdout posts."""
    from mlflow import MlflowClient

    from msc.features.cache import open_cache
    from msc.features.splits import load_splits
    from msc.track.registry import load_msc_model
    from msc.train.calibration import with_temperature
    from msc.train.loop import predict_proba
    from src import featurize as featurize_stage
    from src import predict, split, tune

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = tmp_path / "data"
    shutil.copytree(small_sample_root, data)
    config = with_overrides(tiny_backbone_config(tmp_path, family, data), {"train.epochs": 2, **overrides})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(asdict(config)))))
    for stage, argv in ((split, []), (featurize_stage, []), (tune, ["--trials", "2"]),
                        (predict, ["--model-uri", "models:/msc/Production"])):
        assert stage.main(argv) == 0, stage.__name__
    assert len((tmp_path / "results" / "test_with_label.txt").read_text().splitlines()) > 1

    cache = open_cache(*cache_sections(config, device=True))
    holdout = load_splits(config.data, cache).holdout[:4]
    version = MlflowClient().get_model_version_by_alias("msc", "production")
    expected = with_temperature(predict_proba(load_msc_model("models:/msc/Production").head, cache, holdout),
                                float(version.tags["temperature"]))
    dataset = load_dataset(config.data.source)
    samples = [dataset.samples[r] for r in holdout]
    rows = [[decode_text(s.text_path.read_bytes())[0], base64.b64encode(s.image_path.read_bytes()).decode()]
            for s in samples]
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    with serve_model("models:/msc/Production", tmp_path, env, port):
        import urllib.request

        body = json.dumps({"dataframe_split": {"columns": ["text", "image"], "data": rows}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            served = pd.DataFrame(json.loads(response.read())["predictions"])
    np.testing.assert_allclose(served[["p_positive", "p_neutral", "p_negative"]].to_numpy(), expected, atol=2e-3)
    if overrides:
        trained = load_msc_model("models:/msc/Production").head
        assert trained.hidden_layers in (1, 2)
