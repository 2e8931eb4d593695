"""The split stage: one split of train.txt, written once, read by every stage, never recomputed."""

from pathlib import Path

import numpy as np
import pytest

from msc.config import with_overrides
from msc.core.errors import UserError
from msc.core.labels import COURSE_LABELS
from msc.data.posts import DataSource
from msc.data.split import assign_splits, read_splits, write_splits
from msc.features.build import featurize
from msc.features.splits import load_splits
from tests.helpers import cache_sections


def test_splits_are_disjoint_stratified_and_seeded():
    rng = np.random.default_rng(0)
    labels = list(rng.choice(["positive", "neutral", "negative"], p=[0.6, 0.1, 0.3], size=1000))
    names = np.array(assign_splits(labels, 0.15, 0.15, seed=42))
    assert set(names) == {"train", "val", "holdout"}
    for part in ("holdout", "val"):
        share = np.mean(np.array(labels)[names == part] == "neutral")
        assert abs(share - np.mean(np.array(labels) == "neutral")) < 0.02
    assert np.array_equal(np.array(assign_splits(labels, 0.15, 0.15, seed=42)), names)
    # The holdout is cut first: a different validation fraction never touches it.
    assert np.array_equal(np.array(assign_splits(labels, 0.15, 0.25, seed=42)) == "holdout", names == "holdout")
    assert not np.array_equal(np.array(assign_splits(labels, 0.15, 0.15, seed=7)) == "holdout", names == "holdout")


def test_every_stage_reads_the_written_split(config, cache, splits):
    split = read_splits(config.data.source, config.data.splits_dir, config.data.split_rule)
    assignment, identity = split.assignment, split.identity
    assert identity == splits.identity and len(identity) == 12 and split.labels == ("positive", "neutral", "negative")
    rows = {name: {cache.guids[r] for r in getattr(splits, name)} for name in ("train", "val", "holdout")}
    for guid, (label, split) in assignment.items():
        assert guid in rows[split]
        assert label == cache.manifest.labels[cache.guids.index(guid)]
    assert sum(map(len, rows.values())) == cache.n_labelled


def test_a_skipped_file_leaves_every_other_rows_split_unchanged(private_config, tmp_path):
    """Regression: the split was recomputed from the cache's rows, so one skipped file reshuffled all three."""
    config = with_overrides(private_config, {"data.on_error": "skip"})
    write_splits(config.data.source, config.data.splits_dir, config.data.split_rule)
    whole, _ = featurize(*cache_sections(config))
    before = guids_by_split(whole, load_splits(config.data, whole))
    holdout_guid = sorted(before["holdout"])[0]
    (Path(config.data.root) / "data" / f"{holdout_guid}.jpg").write_bytes(b"\xff\xd8 truncated")
    skipped = with_overrides(config, {"features.dir": str(tmp_path / "features-skip")})
    cache, _ = featurize(*cache_sections(skipped))
    assert [item["guid"] for item in cache.manifest.skipped] == [holdout_guid]
    after = guids_by_split(cache, load_splits(skipped.data, cache))
    assert after["holdout"] == before["holdout"] - {holdout_guid}
    assert after["train"] == before["train"] and after["val"] == before["val"]


def guids_by_split(cache, splits) -> dict[str, set[str]]:
    return {name: {cache.guids[r] for r in getattr(splits, name)} for name in ("train", "val", "holdout")}


def test_a_missing_or_stale_split_is_a_sentence(private_config):
    config = private_config
    cache, _ = featurize(*cache_sections(config))
    with pytest.raises(UserError, match=r"no split in .*python -m src.split"):
        load_splits(config.data, cache)
    write_splits(config.data.source, config.data.splits_dir, config.data.split_rule)
    with pytest.raises(UserError, match=r"stale: seed changed.*python -m src.split"):
        load_splits(with_overrides(config, {"data.split_seed": 7}).data, cache)
    train_file = Path(config.data.root) / "train.txt"
    lines = train_file.read_text().splitlines()
    train_file.write_text("\n".join(lines[:-1]) + "\n")  # one labelled sample fewer
    with pytest.raises(UserError, match="stale: listing_sha256 changed"):
        load_splits(config.data, cache)
    # The split follows train.txt; the cache still has the removed guid.
    write_splits(config.data.source, config.data.splits_dir, config.data.split_rule)
    with pytest.raises(UserError, match="disagree on guid .*different label files"):
        load_splits(config.data, cache)


def train_file(folder: Path, labels: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("guid,tag\n" + "".join(f"{i},{label}\n" for i, label in enumerate(labels)))
    return folder


@pytest.mark.parametrize("neutral", [2, 3])
def test_a_class_with_almost_no_rows_is_warned_about_at_split_time(tmp_path, capsys, neutral):
    """2-3 neutral rows: validation and holdout got 0 of them, with no warning."""
    from msc.data.split import SplitRule

    root = train_file(tmp_path / "data", ["positive"] * 60 + ["negative"] * 40 + ["neutral"] * neutral)
    write_splits(DataSource(root), tmp_path / "splits", SplitRule(0.15, 0.15, 42))
    warning = capsys.readouterr().err
    assert "warning:" in warning and "class neutral has" in warning and "in holdout (fewer than 5)" in warning
    assert "class positive" not in warning


def test_a_class_without_holdout_rows_is_not_measured_not_zero():
    from msc.train.metrics import classification_metrics, reported_metrics

    y_true, y_pred = np.array([0, 0, 2, 2]), np.array([0, 1, 2, 2])  # no neutral (1) in the rows
    scores = reported_metrics(classification_metrics(y_true, y_pred, COURSE_LABELS))
    assert scores["f1_neutral"] is None and "no neutral sample" in scores["not_measured"]
    assert scores["macro_f1"] == pytest.approx((scores["f1_positive"] + scores["f1_negative"]) / 2)
    both = classification_metrics(np.array([0, 1, 2]), np.array([0, 1, 2]), COURSE_LABELS)
    assert "not_measured" not in both and both["f1_neutral"] == 1.0


def test_a_header_only_train_file_is_a_sentence(tmp_path):
    """Empty input for the split stage: a sentence, not sklearn's error."""
    from msc.data.split import SplitRule

    root = train_file(tmp_path / "data", [])
    with pytest.raises(UserError, match="train.txt has no labelled posts"):
        write_splits(DataSource(root), tmp_path / "splits", SplitRule(0.15, 0.15, 42))


def test_a_splits_csv_that_split_json_does_not_describe_is_refused(tmp_path, small_sample_root):
    """A split rewritten between a reader's two reads, or one file copied from elsewhere: never mixed."""
    from msc.data.split import SplitRule

    rule = SplitRule(0.15, 0.15, 42)
    write_splits(DataSource(small_sample_root), tmp_path, rule)
    assert read_splits(DataSource(small_sample_root), tmp_path, rule).identity
    lines = (tmp_path / "splits.csv").read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace(",train", ",holdout") if ",train" in lines[1] else lines[1].replace(",", ",x", 1)
    (tmp_path / "splits.csv").write_text("".join(lines))
    with pytest.raises(UserError, match="splits.csv' is not the split that .*split.json' describes"):
        read_splits(DataSource(small_sample_root), tmp_path, rule)
