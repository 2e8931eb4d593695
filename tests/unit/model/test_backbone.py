import pytest
import torch
from PIL import Image

from msc.core.errors import UserError
from msc.model.backbone import load_backbone
from msc.model.batch import FeatureBatch
from msc.model.heads import build_head
from tests.helpers import image_side_and_tokens


def test_no_backbone_parameter_ever_receives_a_gradient(tiny_clip):
    """Run backbone and head in one graph with autograd on: only the head may get gradients."""
    backbone = load_backbone(str(tiny_clip), device="cpu")
    assert not backbone.model.training
    encoded = backbone.tokenize(["so happy today", "sad"], 77)
    pixels = torch.from_numpy(backbone.preprocess_image(Image.new("RGB", (64, 80), (200, 20, 20))))[None].repeat(2, 1, 1, 1)
    with torch.enable_grad():
        text_pooled, text_tokens, _ = backbone.encode_text(encoded["input_ids"], encoded["attention_mask"])
        image_pooled, image_tokens, _ = backbone.encode_image(pixels)
        head = build_head("cross_attention", backbone.dim, hidden_dim=8, dropout=0.0, classes=3)
        batch = FeatureBatch(text_pooled, image_pooled, text_tokens, encoded["attention_mask"].bool(), image_tokens)
        head(batch).sum().backward()
    with_grad = [name for name, p in backbone.model.named_parameters() if p.requires_grad or p.grad is not None]
    assert with_grad == []
    assert all(p.grad is not None for p in head.parameters())


def test_unavailable_backbone_names_the_three_ways_out(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import; the env var is too late
    with pytest.raises(UserError) as error:
        load_backbone("openai/clip-vit-base-patch32-not-cached")
    message = str(error.value)
    assert "huggingface-cli download" in message
    assert "local folder" in message
    assert "python -m src.sample" in message


def test_shapes_of_the_sample_backbone(tiny_clip):
    backbone = load_backbone(str(tiny_clip), device="cpu")
    encoded = backbone.tokenize(["a b c", "love"], 77)
    pooled, tokens, _ = backbone.encode_text(encoded["input_ids"], encoded["attention_mask"])
    assert pooled.shape == (2, backbone.dim) and tokens.shape == (2, encoded["input_ids"].shape[1], backbone.dim)
    side, image_tokens = image_side_and_tokens()
    pooled, tokens, _ = backbone.encode_image(torch.zeros(3, 3, side, side))
    assert pooled.shape == (3, backbone.dim) and tokens.shape == (3, image_tokens, backbone.dim)  # CLS + patches
    assert image_tokens == 17  # 32 px in 8 px patches: CLS + 4 x 4


@pytest.mark.parametrize("name", ["./models/nope", "../nope", "/nope/clip", "{tmp}/missing-clip"])
def test_a_path_that_is_not_there_is_never_asked_of_the_hub(name, tmp_path, monkeypatch):
    import transformers

    def no_hub(*args, **kwargs):
        raise AssertionError("tried against the hub")

    monkeypatch.setattr(transformers.CLIPModel, "from_pretrained", no_hub)
    name = name.format(tmp=tmp_path)  # an existing parent folder makes it a path too
    with pytest.raises(UserError, match="model.backbone .*python -m src.sample"):
        load_backbone(name, device="cpu")
