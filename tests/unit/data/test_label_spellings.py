"""Two spellings of one label (case, Unicode form) are refused, never trained as two classes (issue 30, item 4)."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pandas as pd
import pytest

from msc.core.errors import UserError
from msc.data.dataset import read_posts
from msc.data.posts import DataSource

GOOD = unicodedata.normalize("NFC", "긍정")  # Korean "positive", composed: 2 characters
GOOD_NFD = unicodedata.normalize("NFD", GOOD)  # the same word decomposed into 5 jamo: also letters


def table(root: Path, name: str, labels: list[str]) -> DataSource:
    """A table of posts with one row per label in ``labels`` (ids 1, 2, ...), no images."""
    rows = [{"id": str(i), "text": f"post {i}", "image_path": "", "label": label} for i, label in enumerate(labels, 1)]
    root.mkdir(parents=True, exist_ok=True)
    if name.endswith(".jsonl"):
        (root / name).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    elif name.endswith(".parquet"):
        pd.DataFrame(rows).to_parquet(root / name)
    else:
        pd.DataFrame(rows).to_csv(root / name, index=False)
    return DataSource(root, "table", name)


def course(root: Path, tags: list[str], labels: tuple[str, ...] | None = None) -> DataSource:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.txt").write_text("guid,tag\n" + "".join(f"{i},{tag}\n" for i, tag in enumerate(tags, 1)),
                                    encoding="utf-8")
    (root / "test_without_label.txt").write_text("guid,tag\n", encoding="utf-8")
    return DataSource(root, labels=labels)


def test_a_table_with_positive_beside_positive_is_refused(tmp_path):
    source = table(tmp_path, "posts.csv", ["positive", "negative", "Positive", "neutral"])
    with pytest.raises(UserError, match=r"posts.csv: the labels 'positive' \(row 1, id '1'\) and 'Positive' \(row 3, "
                                        r"id '3'\) are equal after case folding .*list both in data.labels"):
        read_posts(source)


def test_both_spellings_listed_in_data_labels_are_two_classes_on_purpose(tmp_path):
    source = table(tmp_path, "posts.csv", ["positive", "negative", "Positive"])
    labels = ("positive", "Positive", "negative")
    dataset = read_posts(DataSource(source.root, "table", "posts.csv", labels=labels))
    assert dataset.labels == labels and [s.label for s in dataset.labelled] == ["positive", "negative", "Positive"]


@pytest.mark.parametrize("name", ["posts.jsonl", "posts.parquet"])
def test_composed_and_decomposed_unicode_are_one_label(tmp_path, name):
    source = table(tmp_path, name, [GOOD, "negative", GOOD_NFD])
    with pytest.raises(UserError, match=f"the labels '{GOOD}' .row 1.* and '{GOOD_NFD}' .row 3.*NFC"):
        read_posts(source)


def test_a_table_label_outside_data_labels_says_which_label_it_spells(tmp_path):
    source = table(tmp_path, "posts.csv", ["negative", "Positive"])
    with pytest.raises(UserError, match="row 2, column 'label' is 'Positive', which differs from 'positive' only in "
                                        "case or Unicode form"):
        read_posts(DataSource(source.root, "table", "posts.csv", labels=("positive", "negative")))


def test_the_course_layout_refuses_two_spellings_of_a_tag(tmp_path):
    """The sibling format: train.txt's tags are case-insensitive, but two spellings in one file are refused."""
    with pytest.raises(UserError, match=r"train.txt: the labels 'positive' \(line 2, guid 1\) and 'Positive' \(line 4, "
                                        r"guid 3\) are equal"):
        read_posts(course(tmp_path / "a", ["positive", "negative", "Positive", "neutral"]))
    one_spelling = read_posts(course(tmp_path / "b", ["Positive", "Negative", "Neutral"]))
    assert [s.label for s in one_spelling.labelled] == ["positive", "negative", "neutral"]  # the course's own habit
    both = read_posts(course(tmp_path / "c", ["positive", "Positive", "negative"], ("positive", "Positive", "negative")))
    assert [s.label for s in both.labelled] == ["positive", "Positive", "negative"]


def test_the_course_layout_names_the_label_a_decomposed_tag_spells(tmp_path):
    with pytest.raises(UserError, match=f"unknown tag '{GOOD_NFD}', which differs from '{GOOD}' only in case or "
                                        "Unicode form"):
        read_posts(course(tmp_path, [GOOD, GOOD_NFD, "negative"], (GOOD, "negative")))
