"""model.runtime: onnxruntime computes the features torch does: in featurize (towers exported once and
reused) and in the logged model, whose head.json records the runtime."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from msc.analysis.zero_shot import zero_shot
from msc.config import TrainConfig
from msc.data.text import normalize_tweet
from msc.features.build import featurize
from msc.features.manifest import read_manifest
from msc.model.backbone import load_backbone
from msc.model.batch import FeatureBatch
from msc.model.heads import build_head
from msc.model.onnx_towers import CACHE_ENV, TOWERS_JSON, OnnxBackbone, runtime_backbone
from msc.model.tiny import write_backbone
from msc.track.logged_model import log_trial_model
from tests.helpers import cache_sections, make_config

LABELS = ("positive", "neutral", "negative")


@pytest.fixture()
def towers(tmp_path, monkeypatch) -> Path:
    """This test's own ONNX tower cache."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "towers"))
    return tmp_path / "towers"


def sample_posts(root: Path, n: int) -> tuple[list[str], list[Path]]:
    images = sorted((root / "data").glob("*.jpg"))[:n]
    texts = [(root / "data" / f"{p.stem}.txt").read_text(encoding="utf-8", errors="replace") for p in images]
    return texts, images


def cache_batch(folder: Path) -> FeatureBatch:
    """Every row of a cache, as the heads read it."""
    read = {name: torch.from_numpy(np.load(folder / f"{name}.npy")).float()
            for name in ("text_pooled", "image_pooled", "text_tokens", "image_tokens")}
    return FeatureBatch(read["text_pooled"], read["image_pooled"], read["text_tokens"],
                        torch.from_numpy(np.load(folder / "text_mask.npy")), read["image_tokens"])


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_onnxruntime_features_match_torch(tmp_path, towers, small_sample_root, family):
    backbone = tmp_path / f"tiny-{family}"
    write_backbone(backbone, "tiny", seed=0, family=family)
    # fp32, before the cache's float16 rounding: the towers themselves, on the sample's posts.
    texts, images = sample_posts(small_sample_root, 24)
    torch_backbone = load_backbone(str(backbone), "main", "cpu", "fp32")
    onnx_backbone = runtime_backbone(str(backbone), "main", "cpu", "auto", None, "onnxruntime")
    assert isinstance(onnx_backbone, OnnxBackbone) and onnx_backbone.precision == "fp32"
    encoded = torch_backbone.tokenize([normalize_tweet(t) for t in texts], 77)
    pixels = torch.from_numpy(np.stack([torch_backbone.preprocess_image(Image.open(p).convert("RGB")) for p in images]))
    with torch.inference_mode():
        for encode, args in (("encode_text", (encoded["input_ids"], encoded["attention_mask"])), ("encode_image", (pixels,))):
            expected, found = getattr(torch_backbone, encode)(*args), getattr(onnx_backbone, encode)(*args)
            assert (expected.pooled - found.pooled).abs().max() < 1e-4
            assert (expected.tokens - found.tokens).abs().max() < 1e-4

    # featurize: another fingerprint, the runtime in the manifest, the same cached values up to float16's rounding.
    base = {"features.augment_views": 0}
    configs = {runtime: make_config(small_sample_root, backbone, tmp_path / runtime, {**base, "model.runtime": runtime})
               for runtime in ("torch", "onnxruntime")}
    caches = {runtime: featurize(*cache_sections(config))[0] for runtime, config in configs.items()}
    manifests = {runtime: read_manifest(tmp_path / runtime) for runtime in configs}
    assert manifests["torch"].fingerprint != manifests["onnxruntime"].fingerprint
    assert manifests["onnxruntime"].preprocessing["model.runtime"] == "onnxruntime"
    batches = {runtime: cache_batch(tmp_path / runtime) for runtime in configs}
    for name in ("text_pooled", "image_pooled", "text_tokens", "image_tokens"):
        expected, found = getattr(batches["torch"], name), getattr(batches["onnxruntime"], name)
        assert ((expected - found).abs() <= 1e-4 + 2**-10 * expected.abs()).all(), name  # one float16 step
    torch.manual_seed(0)
    head = build_head("early", caches["torch"].dim, 16, 0.0, 3).eval()
    with torch.inference_mode():
        assert torch.equal(head(batches["torch"]).argmax(1), head(batches["onnxruntime"]).argmax(1))

    # The next run reuses the cache, and a rebuild reuses the exported towers.
    (exported,) = [path for path in towers.iterdir() if not path.name.startswith(".")]
    stamp = (exported / TOWERS_JSON).stat().st_mtime_ns
    assert featurize(*cache_sections(configs["onnxruntime"]))[1] is False
    assert featurize(*cache_sections(configs["onnxruntime"]), force=True)[1] is True
    assert [p for p in towers.iterdir() if not p.name.startswith(".")] == [exported]
    assert (exported / TOWERS_JSON).stat().st_mtime_ns == stamp


def test_int8_is_its_own_cache_close_to_fp32_and_a_posts_features_are_its_own(tmp_path, towers, small_sample_root,
                                                                               tiny_clip):
    # int8-7: batches of 7 posts, not 32. Dynamic quantization scales a call's activations by their largest,
    # so int8 runs one post at a time: its features never depend on the posts batched with it.
    for name, precision, batch in (("fp32", "fp32", 32), ("int8", "int8", 32), ("int8-7", "int8", 7)):
        config = make_config(small_sample_root, tiny_clip, tmp_path / name,
                             {"features.augment_views": 0, "model.runtime": "onnxruntime", "model.precision": precision,
                              "features.batch_size": batch})
        cache, _ = featurize(*cache_sections(config))
    # The stages that run the backbone beside the cache run it as the cache was built: the zero-shot row's prompts.
    assert len(zero_shot(config, cache, np.arange(10)).predictions[0]) == 10
    assert read_manifest(tmp_path / "fp32").fingerprint != read_manifest(tmp_path / "int8").fingerprint
    for name in ("text_pooled", "text_tokens", "image_pooled", "image_tokens"):
        assert np.array_equal(np.load(tmp_path / "int8" / f"{name}.npy"), np.load(tmp_path / "int8-7" / f"{name}.npy"))
    assert sorted(path.name.split("-")[0] for path in towers.iterdir() if not path.name.startswith(".")) == ["fp32", "int8"]
    fp32, int8 = (torch.from_numpy(np.load(tmp_path / p / "image_pooled.npy")).float() for p in ("fp32", "int8"))
    # Random weights: close, not equal (the real backbone's cost is the ablation's holdout row to judge).
    cosine = torch.nn.functional.cosine_similarity(fp32, int8, dim=1)
    assert cosine.min() > 0.95 and not torch.equal(fp32, int8)


def test_logged_model_computes_features_with_the_runtime_it_records(tmp_path, towers, monkeypatch, sample_root,
                                                                    tiny_clip):
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("runtime", artifact_location=str(tmp_path / "mlruns"))
    torch.manual_seed(0)
    head, train = build_head("early", 128, 16, 0.0, len(LABELS)).eval(), TrainConfig(fusion="early", hidden_dim=16)
    models = {}
    with mlflow.start_run(experiment_id=experiment):
        for runtime in ("torch", "onnxruntime"):
            info = log_trial_model(head, train, 128, str(tiny_clip), "main", 77, LABELS, runtime=(runtime, "auto"))
            models[runtime] = mlflow.pyfunc.load_model(info.model_uri, model_config={"trusted_input": True})
    assert isinstance(models["onnxruntime"].unwrap_python_model().backbone, OnnxBackbone)
    assert not isinstance(models["torch"].unwrap_python_model().backbone, OnnxBackbone)
    texts, images = sample_posts(sample_root, 20)
    frame = pd.DataFrame({"text": texts, "image": [str(p) for p in images]})
    out = {runtime: model.predict(frame) for runtime, model in models.items()}
    columns = [f"p_{label}" for label in LABELS]
    assert np.abs(out["torch"][columns].to_numpy() - out["onnxruntime"][columns].to_numpy()).max() < 1e-4
    assert out["torch"]["label"].tolist() == out["onnxruntime"]["label"].tolist()
