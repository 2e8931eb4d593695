import pytest
import torch

from msc.model.batch import FeatureBatch
from msc.model.heads import HEADS, build_head

B, L, M, P = 5, 7, 10, 16


def random_batch() -> FeatureBatch:
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 3:] = False  # a short text
    return FeatureBatch(torch.randn(B, P), torch.randn(B, P), torch.randn(B, L, P), mask, torch.randn(B, M, P))


@pytest.mark.parametrize("fusion", sorted(HEADS))
def test_forward_and_backward_shapes(fusion):
    torch.manual_seed(0)
    head = build_head(fusion, P, hidden_dim=8, dropout=0.1, classes=3)
    logits = head(random_batch())
    assert logits.shape == (B, 3)
    logits.sum().backward()
    missing = [name for name, p in head.named_parameters() if p.grad is None]
    assert not missing, f"{fusion}: parameters without gradient: {missing}"


def test_cross_attention_reads_individual_patches():
    """Attention over one pooled vector is the identity; ours must react to a single patch."""
    torch.manual_seed(0)
    head = build_head("cross_attention", P, hidden_dim=8, dropout=0.0, classes=3).eval()
    batch = random_batch()
    before = head(batch)
    batch.image_tokens[:, 4] += 3.0  # change one patch of every image
    assert not torch.allclose(head(batch), before)


def test_padding_tokens_are_ignored():
    torch.manual_seed(0)
    for fusion in ("early", "cross_attention"):
        head = build_head(fusion, P, hidden_dim=8, dropout=0.0, classes=3).eval()
        batch = random_batch()
        before = head(batch)[0]
        batch.text_tokens[0, 3:] = 100.0  # only padding positions of sample 0
        assert torch.allclose(head(batch)[0], before, atol=1e-5), fusion


def test_gate_weights_are_per_sample_and_sum_to_one():
    head = build_head("gated", P, hidden_dim=8, dropout=0.0, classes=3)
    weights = head.gate_weights(random_batch())
    assert weights.shape == (B, 2)
    assert torch.allclose(weights.sum(1), torch.ones(B))


def test_a_registered_head_is_a_fusion_the_config_and_the_search_space_accept(monkeypatch, tmp_path):
    """One registry: registering a head is all it takes for params.yaml and tune.search_space to name it."""
    from msc.config import load_config, with_overrides
    from msc.core.errors import UserError
    from msc.model import heads
    from tests.helpers import REPO

    with pytest.raises(UserError, match="train.fusion.*one of text, image, early, late, cross_attention, gated"):
        with_overrides(load_config(REPO / "params.yaml"), {"train.fusion": "bilinear"})
    with pytest.raises(ValueError, match="already registered"):
        heads.register_head("late")(heads.HEADS["late"])
    monkeypatch.setitem(heads.HEADS, "bilinear", heads.HEADS["late"])
    assert with_overrides(load_config(REPO / "params.yaml"), {"train.fusion": "bilinear"}).train.fusion == "bilinear"
    params = tmp_path / "params.yaml"
    params.write_text("tune:\n  search_space:\n    train.fusion: {type: categorical, choices: [late, bilinear]}\n")
    assert load_config(params).tune.search_space["train.fusion"]["choices"] == ["late", "bilinear"]
    build_head("bilinear", P, hidden_dim=8, dropout=0.0, classes=3)
