"""The data model every format is read into: posts (``Sample``), a dataset of them, and where they are."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DataSource:
    """Where the posts are and how they are laid out: params.yaml's data section as the data layer reads it."""

    root: Path  # the dataset folder (a DVC-tracked folder; the table lives in it)
    format: str = "mvsa"  # mvsa: train.txt, test_without_label.txt, {guid}.txt|jpg | table: one file of posts
    table: str | None = None  # format table: the file, relative to root
    columns: dict[str, str] = field(default_factory=dict)  # format table: our column name -> the table's
    labels: tuple[str, ...] | None = None  # the ordered label set; None: the course's (mvsa) or the data's (table)

    @property
    def table_path(self) -> Path:
        return self.root / (self.table or "")


@dataclass(frozen=True)
class Sample:
    guid: str  # a table's id
    label: str | None  # None for test (unlabelled) samples
    text_path: Path | None  # None when the text is inline (``text``)
    image_path: Path | None  # None: the post has no image and is read from its text alone
    text: str | None = None  # a table's inline text, raw as written
    split: str | None = None  # a table's fixed split (train/val/holdout); None: drawn by the split stage


@dataclass(frozen=True)
class Dataset:
    root: Path
    labelled: list[Sample]  # in file order
    test: list[Sample]  # the unlabelled samples, in file order
    labels: tuple[str, ...]  # the label set, in class order
    label_files: tuple[Path, ...]  # the files that list the posts and labels (hashed by the split and the cache)

    @property
    def samples(self) -> list[Sample]:
        """Labelled then test samples: the row order of the feature cache."""
        return self.labelled + self.test
