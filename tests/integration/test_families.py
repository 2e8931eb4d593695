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
import yaml

from benchmarks.processes import free_port, serve_model
from msc.config import with_overrides
from msc.data.dataset import load_dataset
from msc.data.text import decode_text
from msc.model.tiny import FAMILIES
from tests.helpers import cache_sections
from tests.unit.model.test_families import tiny_backbone_config

TOP_LAYERS_SPACE = {"features.top_layers": 2, "tune.search_space": {
    "train.top_layers": {"type": "int", "low": 1, "high": 2},
    "train.top_layers_adapter": {"type": "categorical", "choices": ["full", "lora"]},
    "train.fusion": {"type": "categorical", "choices": ["late", "cross_attention"]}}}


@pytest.mark.parametrize("family,overrides", [(family, {}) for family in FAMILIES] + [("clip", TOP_LAYERS_SPACE)],
                         ids=[*FAMILIES, "clip-top-layers"])
def test_featurize_tune_predict_and_serve(family, overrides, small_sample_root, tmp_path, monkeypatch):
    """The stages users type, on the family's backbone; the served probabilities are the ones the
    registered head gives the cached features of the same holdout posts."""

    from msc.features.cache import open_cache
    from msc.features.splits import load_splits
    from msc.track.logged_model import logged_head
    from msc.track.registry import load_msc_model
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
    # The registered head's raw probabilities of the cached features, through its head.json's probability rules.
    rules = logged_head("models:/msc/Production")[0].rules()
    expected = rules.predict(predict_proba(load_msc_model("models:/msc/Production").head, cache, holdout))[0]
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
