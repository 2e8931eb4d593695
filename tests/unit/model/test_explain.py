"""Modality attribution (msc/model/explain.py): exact, on the side of the modality that carries the
label, and in the pyfunc's output only when asked."""

import random
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException

from msc.data.split import write_splits
from msc.features.build import featurize
from msc.features.splits import load_splits
from msc.model.calibrated import CalibrationMap, DecisionRule, ProbabilityRules
from msc.model.explain import drivers, modality_attribution, without
from msc.train.loop import train_head
from tests.helpers import cache_sections, image_side_and_tokens, make_config


@pytest.mark.parametrize("fusion", ["late", "gated", "cross_attention", "early"])
def test_the_two_shares_add_up_to_full_minus_none_exactly(config, cache, splits, fusion):
    result = train_head(cache, splits.train, splits.val, replace(config.train, fusion=fusion, epochs=1))
    head = result.head
    batch = cache.batch(splits.holdout, tokens=head.uses_tokens)
    raw, attr_text, attr_image = modality_attribution(head, batch, ProbabilityRules(CalibrationMap(temperature=1.3)))
    with torch.no_grad():
        full = torch.log_softmax(head(batch) / 1.3, -1)
        none = torch.log_softmax(head(without(batch, text=True, image=True)) / 1.3, -1)
    predicted = full.argmax(-1, keepdim=True)
    expected = (full.gather(-1, predicted) - none.gather(-1, predicted))[:, 0].numpy()
    np.testing.assert_allclose(attr_text + attr_image, expected, atol=1e-5)
    np.testing.assert_allclose(raw, torch.softmax(head(batch), -1).detach().numpy(), atol=1e-6)
    assert np.abs(attr_text).max() > 0 and np.abs(attr_image).max() > 0


def test_the_split_is_of_the_label_the_decision_rule_gives(config, cache, splits):
    """With a decision rule that picks a class the argmax would not, the attributed log-probability is that
    class's, under the calibration map: the label reported is the label explained."""
    head = train_head(cache, splits.train, splits.val, replace(config.train, fusion="late", epochs=1)).head
    batch = cache.batch(splits.holdout)
    calibration = CalibrationMap(kind="vector", scale=(1.2, 0.8, 1.0), bias=(0.1, -0.3, 0.2))
    rules = ProbabilityRules(calibration, DecisionRule(weights=(1.0, 50.0, 1.0)))  # neutral wins nearly everywhere
    raw, attr_text, attr_image = modality_attribution(head, batch, rules)
    with torch.no_grad():
        none = torch.softmax(head(without(batch, text=True, image=True)), -1).numpy()
    label = rules.predict(raw)[1]
    assert (label == 1).mean() > 0.9 and (calibration.apply(raw).argmax(1) != label).any()
    rows = np.arange(len(label))
    expected = np.log(calibration.apply(raw))[rows, label] - np.log(calibration.apply(none))[rows, label]
    np.testing.assert_allclose(attr_text + attr_image, expected, atol=1e-5)


def test_without_leaves_the_batch_alone(cache):
    batch = cache.batch(np.arange(4), tokens=True)
    text_only = without(batch, text=False, image=True)
    assert not text_only.image_pooled.any() and not text_only.image_tokens.any()
    assert batch.image_pooled.any() and torch.equal(text_only.text_tokens, batch.text_tokens)


def test_drivers_need_the_margin():
    assert drivers(np.array([0.5, 0.1, -0.3, 0.05]), np.array([0.1, 0.5, 0.0, 0.0]), 0.1) ==\
        ["text", "image", "image", "both"]


@pytest.mark.parametrize("informative", ["text", "image"])
def test_the_modality_that_carries_the_label_drives_it(tmp_path, small_sample_root, tiny_clip, informative):
    """The other modality's files are shuffled among the posts: noise. Its share must be the smaller one."""
    data = shutil.copytree(small_sample_root, tmp_path / "data")
    noise = sorted((data / "data").glob("*.jpg" if informative == "text" else "*.txt"))
    contents = [path.read_bytes() for path in noise]
    random.Random(0).shuffle(contents)
    for path, content in zip(noise, contents):
        path.write_bytes(content)
    config = make_config(data, tiny_clip, tmp_path / "features",
                         {"features.augment_views": 0, "train.epochs": 15, "train.lr": 0.003, "train.patience": 15})
    cache, _ = featurize(*cache_sections(config))
    write_splits(config.data.source, config.data.splits_dir, config.data.split_rule)
    splits = load_splits(config.data, cache)
    rows = np.concatenate([splits.val, splits.holdout])
    head = train_head(cache, splits.train, splits.val, config.train).head
    _, attr_text, attr_image = modality_attribution(head, cache.batch(rows))
    carried = (attr_text > attr_image) if informative == "text" else (attr_image > attr_text)
    assert carried.mean() > 0.7, f"{informative} drove {carried.mean():.0%} of {len(rows)} rows"


def test_the_pyfunc_explains_only_when_asked(config, cache, splits, trained_project, sample_root):
    import mlflow

    from msc.track.inference import load_model
    from msc.track.logged_model import log_trial_model
    from msc.track.store import setup_mlflow

    head = train_head(cache, splits.train, splits.val, replace(config.train, epochs=1)).head
    setup_mlflow()
    with mlflow.start_run():
        info = log_trial_model(head, config.train, cache.dim, config.model.backbone, "main", 77, cache.label_names)
    model = load_model(info.model_uri)
    images = sorted((sample_root / "data").glob("*.jpg"))[:3]
    frame = pd.DataFrame({"text": ["so happy love", "sad awful", None], "image": [str(p) for p in images]})
    plain = model.predict(frame)
    assert list(plain.columns) == ["label", "p_positive", "p_neutral", "p_negative", "used", "input_note"]
    pd.testing.assert_frame_equal(model.predict(frame, params={"explain": False}), plain)
    explained = model.predict(frame, params={"explain": True, "driver_margin": 0.0})
    pd.testing.assert_frame_equal(explained[plain.columns], plain, atol=1e-6)
    assert list(explained.columns[4:]) == ["attr_text", "attr_image", "driver", "used", "input_note"]
    assert explained.loc[2, "attr_text"] == 0.0  # no text: it cannot have moved the prediction
    with pytest.raises(MlflowException, match="explain"):
        model.predict(frame, params={"explain": "perhaps"})


def analysed_result(config, cache, splits, fusion):
    from msc.analysis.variants import Variant, VariantResult
    from msc.train.loop import predict_proba

    train = replace(config.train, fusion=fusion, epochs=2)
    head = train_head(cache, splits.train, splits.val, train).head
    return VariantResult(Variant(fusion, "fusion", train), probs=[predict_proba(head, cache, splits.holdout)],
                         first_head=head)


def test_integrated_gradients_add_up_to_the_logit_change(config, cache, splits):
    from msc.analysis.attribution import integrated_gradients

    head = analysed_result(config, cache, splits, "early").first_head.eval()
    batch = cache.batch(splits.holdout[:1], tokens=True)
    with torch.no_grad():
        logits = head(batch)[0]
        zero = head(without(batch, text=True, image=True))[0]
    target = int(logits.argmax())
    text, image = integrated_gradients(head, batch, target)
    assert len(text) == int(batch.text_mask.sum()) and len(image) == batch.image_tokens.shape[1]
    change = float(logits[target] - zero[target])
    assert text.sum() + image.sum() == pytest.approx(change, rel=0.05, abs=0.02)


def test_the_report_explains_a_token_head_with_tokens_and_patches(config, cache, splits, tmp_path):
    from msc.analysis.ablation import explain_holdout
    from msc.analysis.report_attribution import attribution_section
    from msc.config import with_overrides

    result = analysed_result(config, cache, splits, "cross_attention")
    kinds = ["confident_error"] * len(splits.holdout)
    attribution = explain_holdout(with_overrides(config, {"ablation.evidence_cases": 2}), cache, splits, result, kinds)
    assert len(attribution["attr_text"]) == len(splits.holdout) and attribution["evidence_note"] is None
    assert len(attribution["evidence"]) == 2
    case = attribution["evidence"][0]
    _, image_tokens = image_side_and_tokens()
    grid = int((image_tokens - 1) ** 0.5)  # the tests' CLIP: 32 px in 8 px patches, a 4 x 4 grid
    assert case["patch_grid"] == grid and len(case["patch_attr"]) == grid * grid
    assert len(case["tokens"]) == len(case["token_attr"]) >= 2
    lines = attribution_section(attribution, "cross_attention", [], tmp_path, ("positive", "neutral", "negative"))
    assert (tmp_path / "attribution.png").is_file() and (tmp_path / f"evidence_{case['guid']}.png").is_file()
    assert any("integrated gradients" in line for line in lines)


def test_the_report_says_why_a_pooled_head_has_no_token_evidence(config, cache, splits, tmp_path):
    from msc.analysis.ablation import explain_holdout
    from msc.analysis.report_attribution import attribution_section

    result = analysed_result(config, cache, splits, "late")
    attribution = explain_holdout(config, cache, splits, result, ["confident_error"] * len(splits.holdout))
    assert attribution["evidence"] == [] and "pooled" in attribution["evidence_note"]
    lines = attribution_section(attribution, "late", [], tmp_path, ("positive", "neutral", "negative"))
    assert any(line.startswith("No token or patch evidence") for line in lines)
    assert any("| `correct` |" in line for line in lines)
