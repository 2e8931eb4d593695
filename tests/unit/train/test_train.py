from dataclasses import replace

import numpy as np
import pytest
import torch

from msc.core.errors import UserError
from msc.core.labels import COURSE_LABELS
from msc.model.heads import HEADS
from msc.train.crossfit import out_of_fold_probabilities
from msc.train.loop import class_weights, train_head
from tests.helpers import cache_sections

# A batch of training rows and half one of validation rows: every code path, two epochs, in seconds.
FEW_TRAIN, FEW_VAL = 64, 32


@pytest.mark.parametrize("fusion", sorted(HEADS))
def test_every_head_trains_from_the_cache(cache, config, splits, fusion):
    epochs = []
    result = train_head(cache, splits.train[:FEW_TRAIN], splits.val[:FEW_VAL],
                        replace(config.train, fusion=fusion, epochs=2),
                        on_epoch=lambda epoch, scalars: epochs.append((epoch, scalars)))
    assert [e for e, _ in epochs] == [1, 2]
    for key in ("train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_weighted_f1", "val_f1_neutral"):
        assert np.isfinite(epochs[-1][1][key]), key
    assert 1 <= result.best_epoch <= 2
    assert len(result.val_scores["confusion"]) == 3


def test_training_learns_and_keeps_the_best_epoch(cache, config, splits):
    result = train_head(cache, splits.train, splits.val, replace(config.train, fusion="late", epochs=8, lr=0.003))
    best = max(h["val_weighted_f1"] for h in result.history)
    assert result.val_scores["weighted_f1"] == pytest.approx(best)
    # The sample's image cue alone allows ~0.75; a majority-class guess gets ~0.6.
    assert result.val_scores["accuracy"] > 0.65


def test_early_stopping_stops_after_patience(cache, config, splits):
    result = train_head(cache, splits.train, splits.val, replace(config.train, epochs=50, patience=1, lr=0.01))
    assert len(result.history) < 50 and len(result.history) == result.best_epoch + 1


def test_class_weights():
    labels = np.array([0] * 60 + [1] * 10 + [2] * 30)
    assert torch.allclose(class_weights(labels, 0.0, [1.0, 1.0, 1.0]), torch.ones(3))
    weights = class_weights(labels, 1.0, [1.0, 2.0, 1.0])
    assert weights[1] > weights[2] > weights[0]
    assert weights.mean().item() == pytest.approx(1.0)
    # Any number of classes: a factor per class, a class absent from the rows counted as one row.
    five = class_weights(np.array([0, 0, 1, 2, 3]), 1.0, [1.0, 1.0, 1.0, 3.0, 1.0])
    assert five.shape == (5,) and five[3] > five[1] > five[0] and five.mean().item() == pytest.approx(1.0)


def test_class_factors_come_from_class_boost_and_neutral_boost():
    from msc.config import TrainConfig

    assert TrainConfig(neutral_boost=2.0).class_factors(("positive", "neutral", "negative")) == [1.0, 2.0, 1.0]
    assert TrainConfig(class_boost={"b": 1.5}).class_factors(("a", "b")) == [1.0, 1.5]
    with pytest.raises(UserError, match="train.class_boost.*label 'c'.*a, b"):
        TrainConfig(class_boost={"c": 2.0}).class_factors(("a", "b"))
    with pytest.raises(UserError, match="train.neutral_boost.*label 'neutral'"):
        TrainConfig(neutral_boost=2.0).class_factors(("a", "b"))
    with pytest.raises(UserError, match="keep one"):
        TrainConfig(neutral_boost=2.0, class_boost={"neutral": 2.0})


def test_modality_dropout_zeroes_one_modality_per_chosen_sample(cache):
    from msc.model.batch import drop_modality

    batch = cache.batch(np.arange(6), tokens=True)
    drop_modality(batch, np.array([0, 1]), np.array([2]))
    assert batch.text_pooled[:2].abs().sum() == 0 and batch.text_tokens[:2].abs().sum() == 0
    assert batch.image_pooled[2].abs().sum() == 0 and batch.image_tokens[2].abs().sum() == 0
    assert batch.text_pooled[2:].abs().sum(1).min() > 0 and batch.image_pooled[[0, 1, 3]].abs().sum(1).min() > 0


def test_select_metric_changes_the_kept_epoch(cache, config, splits):
    """Regression: the kept epoch was always the best weighted F1, whatever the study optimised.

    Same seed and no early stop, so both runs train identically; only the selection differs. On the
    session's sample this seed's accuracy peaks at another epoch than its macro F1.
    """
    kept = {}
    for metric in ("val_accuracy", "val_macro_f1"):
        result = train_head(cache, splits.train, splits.val,
                            replace(config.train, fusion="gated", epochs=10, patience=10, seed=2, select_metric=metric))
        values = [h[metric] for h in result.history]
        assert result.best_epoch == 1 + int(np.argmax(values)), metric
        assert result.score(metric) == pytest.approx(max(values))
        kept[metric] = result.best_epoch
    assert kept["val_accuracy"] != kept["val_macro_f1"]


def test_patience_counts_epochs_without_a_better_select_metric(cache, config, splits):
    result = train_head(cache, splits.train, splits.val,
                        replace(config.train, fusion="gated", epochs=10, patience=2, seed=3, select_metric="val_accuracy"))
    accuracy = [h["val_accuracy"] for h in result.history]
    assert len(result.history) == result.best_epoch + 2 and max(accuracy[result.best_epoch:]) <= accuracy[result.best_epoch - 1]


@pytest.mark.parametrize("fusion", sorted(HEADS))
def test_the_seed_reaches_every_head(cache, config, splits, fusion):
    """The ablation's seeds must change what a head learns, the image head's included."""
    from msc.train.loop import predict_proba

    probs = [predict_proba(train_head(cache, splits.train[:FEW_TRAIN], splits.val[:FEW_VAL],
                                      replace(config.train, fusion=fusion, epochs=1, seed=seed)).head, cache, splits.val)
             for seed in (0, 1)]
    assert not np.allclose(probs[0], probs[1], atol=1e-4)


def test_a_cache_resident_on_the_device_trains_exactly_as_the_memory_map(cache, config, splits):
    """The device path (the whole cache copied once, batches sliced there), run on the CPU."""
    from msc.features.cache import FeatureCache
    from msc.train.loop import predict_proba

    train = replace(config.train, fusion="cross_attention", epochs=2, device="cpu")
    rows = splits.train[: 2 * FEW_TRAIN], splits.val[:FEW_VAL]  # two batches: the second one's views differ
    mapped = train_head(cache, *rows, train)
    resident_cache = FeatureCache(cache.folder).to(torch.device("cpu"))
    resident = train_head(resident_cache, *rows, train)
    assert resident.history == mapped.history
    assert np.array_equal(predict_proba(resident.head, resident_cache, splits.val),
                          predict_proba(mapped.head, cache, splits.val))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_train_device_cuda_without_cuda_is_a_sentence(cache, config):
    from msc.config import with_overrides
    from msc.core.errors import UserError
    from msc.features.cache import open_cache

    with pytest.raises(UserError, match="train.device.*cuda.*auto or cpu"):
        open_cache(*cache_sections(with_overrides(config, {"train.device": "cuda"}), device=True))


def test_fp16_training_on_the_cpu_is_a_sentence(cache, config, splits):
    from msc.core.errors import UserError

    with pytest.raises(UserError, match="fp16 needs a GPU"):
        train_head(cache, splits.train, splits.val, replace(config.train, precision="fp16", epochs=1))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_token_head_trains_on_cuda(config, splits):
    from msc.config import with_overrides
    from msc.features.cache import open_cache

    cache = open_cache(*cache_sections(with_overrides(config, {"train.device": "cuda"}), device=True))
    assert cache.device.type == "cuda"
    result = train_head(cache, splits.train, splits.val, replace(config.train, fusion="cross_attention", epochs=2))
    assert next(result.head.parameters()).is_cuda
    assert all(np.isfinite(h["train_loss"]) for h in result.history)


def test_a_text_view_cache_trains(tmp_path, small_sample_root, tiny_clip):
    """features.text_augment_views: K augmented texts per labelled tweet, one sampled per epoch."""
    from msc.data.split import write_splits
    from msc.features.build import featurize
    from msc.features.splits import load_splits
    from tests.helpers import cache_sections, make_config

    config = make_config(small_sample_root, tiny_clip, tmp_path / "features", {"features.text_augment_views": 2,
                                                                          "features.augment_views": 0})
    cache, built = featurize(*cache_sections(config))
    assert built and cache.text_augment_views == 2
    assert cache.array("aug_text_pooled").shape == (cache.n_labelled, 2, cache.dim)
    assert not np.array_equal(cache.array("aug_text_pooled")[:, 0], cache.array("text_pooled")[: cache.n_labelled])
    write_splits(config.data.source, config.data.splits_dir, config.data.split_rule)
    splits = load_splits(config.data, cache)
    train = replace(config.train, fusion="cross_attention", epochs=2)
    with_views = train_head(cache, splits.train, splits.val, train)
    without = train_head(cache, splits.train, splits.val, replace(train, use_text_views=False))
    assert all(np.isfinite(h["train_loss"]) for h in with_views.history)
    assert with_views.history[0]["train_loss"] != without.history[0]["train_loss"], "the views reach training"


def test_stop_at_trains_to_that_epoch_and_keeps_it(cache, config, splits):
    """Out-of-fold calibration rows choose nothing: the epoch is fixed, not picked by their scores."""
    result = train_head(cache, splits.train, splits.val, replace(config.train, epochs=3), stop_at=2)
    assert len(result.history) == 2 and result.best_epoch == 2


def test_out_of_fold_probabilities_predict_every_pool_row_once(cache, config, splits):
    pool = np.concatenate([splits.train, splits.val])
    probs = out_of_fold_probabilities(cache, pool, config.train, epochs=1, folds=3, seed=0)
    assert probs.shape == (len(pool), len(COURSE_LABELS)) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs > 0).all()  # no row left unpredicted (zeros)
    assert np.array_equal(out_of_fold_probabilities(cache, pool, config.train, 1, 3, 0), probs)
