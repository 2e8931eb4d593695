"""The ablation stage: its CSVs, its report and figures, its MLflow runs, and its wording rules."""

import csv

import numpy as np
import pytest

from msc.analysis.error_kinds import error_kind, low_quality_rows
from msc.analysis.report import read_ablation  # src.report imports it after its arguments
from msc.analysis.report_text import separation, summary_sentence
from msc.analysis.variants import make_variants, tuned_train_config
from msc.config import load_config
from msc.core.errors import UserError
from msc.core.handoff import write_handoff
from msc.track.promotion import Registration
from msc.track.summary import TuneSummary
from tests.helpers import committed_params


def tune_summary(best_params: dict, best_trial: int = 1) -> TuneSummary:
    """A tune stage summary that names ``best_params``; the ablation reads nothing else of it."""
    registration = Registration(model="msc", version=1, promoted_now=True, gate="", compared_with_version=None,
                                holdout_samples=0, holdout={}, candidate_holdout_weighted_f1=0.0)
    return TuneSummary(registration, study_name="msc",
                       study_identity="", feature_fingerprint="", split_identity="", best_trial=best_trial,
                       select_metric="val_weighted_f1", best_value=0.0, best_params=best_params)


def read_csv(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))




def test_the_report_without_ablation_results_is_a_sentence(tmp_path):
    with pytest.raises(UserError, match="ablation.json.*python -m src.ablation"):
        read_ablation(tmp_path)


def test_tuned_params_that_do_not_fit_are_a_clear_error(tmp_path):
    """The committed params.yaml as it is: no dataset, backbone or cache is needed to refuse a key."""
    metrics = tmp_path / "metrics.json"
    write_handoff(metrics, tune_summary({"train.nope": 1}))
    with pytest.raises(UserError, match="best_params do not fit.*train.nope"):
        tuned_train_config(load_config(committed_params()), metrics)


def test_error_kinds_apply_in_order():
    positive, neutral, negative = range(3)
    assert error_kind(positive, negative, 0.3, text_only=positive, image_only=negative, low_confidence=0.5) == \
        "modality_conflict"
    assert error_kind(neutral, negative, 0.3, positive, positive, 0.5, neutral=neutral) == "ambiguous_neutral"
    assert error_kind(positive, neutral, 0.9, negative, negative, 0.5, neutral=neutral) == "ambiguous_neutral"
    # A label set without a neutral label has no ambiguous_neutral kind.
    assert error_kind(positive, neutral, 0.9, negative, negative, 0.5) == "confident_error"
    assert error_kind(positive, negative, 0.4, negative, negative, 0.5) == "low_confidence"
    assert error_kind(positive, negative, 0.9, negative, negative, 0.5) == "confident_error"
    assert error_kind(positive, negative, 0.3, positive, negative, 0.5, low_quality=True) == "low_quality_image"


def test_small_or_blurry_images_are_low_quality(cache, splits):
    quality = cache.manifest.image_quality
    assert len(quality["short_side"]) == len(quality["sharpness"]) == len(cache.guids)
    rows = splits.holdout
    flagged = low_quality_rows(cache, rows, min_short_side=10_000)  # every image is smaller
    assert flagged.all()
    sharpness = np.array(quality["sharpness"])
    by_blur = low_quality_rows(cache, rows, min_short_side=0)
    assert (sharpness[rows][by_blur] < np.percentile(sharpness[sharpness >= 0], 10)).all()


def row(name, mean, std):
    return {"variant": name, "weighted_f1": mean, "weighted_f1_std": std}


def intervals(table):
    """A Difference from {(a, b): [low, high]}; the reverse pair is the negated interval."""
    return lambda a, b: table[(a, b)] if (a, b) in table else [-table[(b, a)][1], -table[(b, a)][0]]


def test_differences_within_the_spread_or_an_interval_that_includes_0_are_not_ranked():
    rows = [row("a", 0.80, 0.02), row("b", 0.79, 0.03), row("c", 0.70, 0.01), row("d", 0.75, 0.01)]
    text = separation(rows, intervals({("a", "b"): [-0.01, 0.03], ("a", "c"): [0.06, 0.14],
                                       ("a", "d"): [-0.01, 0.11]}))
    assert text.startswith("`a` has the highest mean weighted F1")
    # b: within the seed spread; d: beyond it, but its paired interval includes 0.
    assert "not ranked against it: `a` − `b`: +1.0 points [-1.0, +3.0]; `a` − `d`: +5.0 points [-1.0, +11.0]" in text
    assert "Below it: `a` − `c`: +10.0 points [+6.0, +14.0]" in text
    tied = separation([row("a", 0.80, 0.05), row("b", 0.78, 0.01)], intervals({("a", "b"): [0.01, 0.03]}))
    assert "not ranked" in tied and "highest" not in tied
    single = separation([row("a", 0.8, None), row("b", 0.7, None)], intervals({("a", "b"): [0.05, 0.15]}))
    assert "Below it: `a` − `b`" in single and "One seed only" in single


def full_row(name, kind, mean, std):
    return {**row(name, mean, std), "kind": kind}


def test_the_summary_sentence_reads_the_table():
    rows = [full_row("cross_attention", "fusion", 0.728, 0.010), full_row("logistic_probe", "baseline", 0.729, None),
            full_row("text", "unimodal", 0.650, 0.005), full_row("image", "unimodal", 0.740, 0.002)]
    difference = intervals({("cross_attention", "logistic_probe"): [-0.03, 0.03],
                            ("cross_attention", "text"): [0.04, 0.12], ("cross_attention", "image"): [-0.05, -0.001]})
    sentence = summary_sentence(rows, "cross_attention", difference)
    assert "the tuned `cross_attention` head (0.728 weighted F1) is not separated from the logistic probe (0.729)" \
        in sentence
    assert "better than the text head (0.650)" in sentence and "worse than the image head (0.740)" in sentence


def test_cached_text_views_add_an_ablation_row(config):
    names = {v.name: v for v in make_variants(config.train, augment_views=2, text_augment_views=3)}
    tuned = config.train.fusion
    assert names[f"{tuned}:no_text_views"].train.use_text_views is False
    assert names[f"{tuned}:no_text_views"].kind == "augmentation" and f"{tuned}:no_views" in names
    assert not any("text_views" in name for name in (v.name for v in make_variants(config.train, 2)))
