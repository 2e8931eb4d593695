"""ONNX graphs of the towers and heads match torch in fp32; the bundle script's preprocessing matches msc's."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from msc.data.images import open_image
from msc.data.text import normalize_tweet
from msc.model.backbone import load_backbone
from msc.model.batch import FeatureBatch
from msc.model.heads import HEADS, build_head
from msc.model.onnx_export import export_head, export_towers
from msc.model.tiny import write_backbone
from tests.helpers import TEST_SHAPE, image_side_and_tokens

ort = pytest.importorskip("onnxruntime")
bundle_predict = pytest.importorskip("msc.model.bundle_predict")
TOKEN_HEADS = {name for name, head in HEADS.items() if head.uses_tokens}  # exported by torch.export: ~20 s each


def session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module", params=["clip", "siglip"])
def tiny_backbone(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx") / f"tiny-{request.param}"
    write_backbone(folder, TEST_SHAPE, seed=0, family=request.param)
    return load_backbone(str(folder), device="cpu", precision="fp32")


def test_tower_features_match_torch_at_other_batch_sizes_and_lengths(tiny_backbone, tmp_path):
    text_graph, image_graph = export_towers(tiny_backbone, tmp_path)
    texts = ["happy", "a much longer text about a sad and awful day with bad news", "x y z", "good", "ok"]
    encoded = tiny_backbone.tokenize(texts, 77)  # 5 rows, a length that is not the traced one
    side, _ = image_side_and_tokens()
    pixels = torch.randn(3, 3, side, side)
    with torch.no_grad():
        text, image = tiny_backbone.encode_text(encoded["input_ids"], encoded["attention_mask"]), \
            tiny_backbone.encode_image(pixels)
    feeds = {"input_ids": encoded["input_ids"].numpy(), "attention_mask": encoded["attention_mask"].numpy()}
    text_session = session(text_graph)
    pooled, tokens = text_session.run(None, {i.name: feeds[i.name] for i in text_session.get_inputs()})
    assert np.abs(pooled - text.pooled.numpy()).max() < 1e-4 and np.abs(tokens - text.tokens.numpy()).max() < 1e-4
    pooled, tokens = session(image_graph).run(None, {"pixel_values": pixels.numpy()})
    assert np.abs(pooled - image.pooled.numpy()).max() < 1e-4 and np.abs(tokens - image.tokens.numpy()).max() < 1e-4


@pytest.mark.parametrize("fusion", [name for name in HEADS if name not in TOKEN_HEADS])
def test_every_head_runs_at_any_text_length_and_matches_torch(fusion, tmp_path):
    """The heads over pooled features; the token heads' are tests/integration/test_onnx_export.py."""
    check_head_at_any_text_length(fusion, tmp_path)


def check_head_at_any_text_length(fusion: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    head = build_head(fusion, 16, 8, 0.1, 3).eval()
    graph = session(export_head(head, 16, 10, tmp_path / "head.onnx"))
    for batch, length in ((1, 3), (4, 11), (3, 40)):  # traced at (2, 5)
        mask = torch.rand(batch, length) > 0.3
        mask[:, 0] = True
        fields = {"text_pooled": torch.randn(batch, 16), "image_pooled": torch.randn(batch, 16),
                  "text_tokens": torch.randn(batch, length, 16), "text_mask": mask,
                  "image_tokens": torch.randn(batch, 10, 16)}
        with torch.no_grad():
            expected = head(FeatureBatch(**fields)).numpy()
        logits = graph.run(None, {i.name: fields[i.name].numpy() for i in graph.get_inputs()})[0]
        assert np.abs(logits - expected).max() < 1e-4, (batch, length)


def test_a_head_over_top_layers_is_refused(tmp_path):
    head = build_head("late", 16, 8, 0.1, 3)
    head.hidden_layers = 1  # as TopLayersModel says of itself
    with pytest.raises(ValueError, match="top_layers k > 0"):
        export_head(head, 16, 10, tmp_path / "head.onnx")


def test_the_script_preprocesses_images_as_the_processor(tiny_backbone, tmp_path):
    from msc.model.onnx_bundle import image_rule

    rng = np.random.default_rng(0)
    shapes = {"wide.jpg": ((2000, 120), "RGB"), "tall.png": ((300, 901), "RGBA"), "odd.png": ((225, 223), "L"),
              "deep.png": ((60, 70), "I;16"), "small.jpg": ((31, 17), "RGB")}
    rule = image_rule(tiny_backbone)
    for name, ((width, height), mode) in shapes.items():
        if mode == "I;16":
            image = Image.fromarray(rng.integers(0, 65535, (height, width)).astype(np.uint16))
        else:
            image = Image.fromarray(rng.integers(0, 255, (height, width, len(mode)), dtype=np.uint8).squeeze(-1)
                                    if mode == "L" else rng.integers(0, 255, (height, width, len(mode)), dtype=np.uint8))
        image.save(tmp_path / name)
        expected = tiny_backbone.preprocess_image(open_image(str(tmp_path / name)))
        ours = bundle_predict.pixels(bundle_predict.open_image(tmp_path / name, rule), rule)
        assert ours.shape == expected.shape and np.abs(ours - expected).max() < 1e-5, name


@pytest.mark.parametrize("text", ["So happy today!!!! :-) http://t.co/xyz @bob_99 #sunny", "awful... terrible, rt @x: wow",
                                  "Très bien 😀👍🏽 don't www.example.com/a?b=1 a@b.com &amp; 555-123-4567", "",
                                  "���� news�� ��22 <3 >:( 🇫🇷 1,000.5 -> state-of-the-art"])
def test_the_script_normalizes_tweets_as_nltk(text):
    assert bundle_predict.normalize(text, 2000) == normalize_tweet(text)
