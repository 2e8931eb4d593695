"""params.yaml's ``data`` section: where the posts are, how they are read and split, checked here where
the table's columns, the split rule and the label rules live."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from msc.core.labels import check_label_set
from msc.core.settings import require
from msc.data.posts import DataSource
from msc.data.split import SplitRule
from msc.data.table import TABLE_COLUMNS, TABLE_FORMATS


@dataclass(frozen=True)
class DataConfig:
    root: str = "data"  # course layout: train.txt, test_without_label.txt, data/{guid}.txt|jpg
    holdout_fraction: float = 0.15  # untouched split of train.txt; the only one reported
    val_fraction: float = 0.15  # split of train.txt for early stopping and tuning
    split_seed: int = 42  # seeds the stratified holdout and validation splits
    on_error: Literal["error", "skip"] = "error"  # a missing or undecodable file: stop, or drop the labelled sample
    splits_dir: str = "splits"  # the split stage's output: splits.csv (guid -> train/val/holdout) and split.json
    text_encoding: str = "auto"  # auto: UTF-8, else GB18030 (the course archive), else cp1252; or one codec
    format: Literal["mvsa", "table"] = "mvsa"  # the course layout, or one table of posts (msc/data/table.py)
    table: str | None = None  # format table: the .csv, .jsonl or .parquet file, relative to root
    columns: dict[str, str] = field(default_factory=dict)  # format table: our column name -> the table's
    labels: list[str] | None = None  # the ordered label set; null: the course's (mvsa) or the table's, sorted

    def __post_init__(self) -> None:
        if self.labels is not None:
            check_label_set(self.labels, "key 'data.labels'")
        unknown = sorted(set(self.columns) - set(TABLE_COLUMNS))
        require(not unknown and all(isinstance(v, str) and v.strip() for v in self.columns.values()), "data.columns",
                self.columns, f"must map some of {', '.join(TABLE_COLUMNS)} to the table's column names")
        theirs = list(self.columns.values())
        require(len(set(theirs)) == len(theirs), "data.columns", self.columns,
                "maps two of our columns to one of yours; map each to its own column")
        require(self.format == "mvsa" or bool(self.table and self.table.lower().endswith(TABLE_FORMATS)), "data.table",
                self.table, f"must name the table of posts ({', '.join(TABLE_FORMATS)}, relative to data.root) when "
                "data.format is table")
        if self.text_encoding != "auto":
            try:
                codecs.lookup(self.text_encoding)
            except LookupError:
                require(False, "data.text_encoding", self.text_encoding, "must be auto or a Python codec name "
                        "such as utf-8, gb18030 or latin-1")
        for name in ("holdout_fraction", "val_fraction"):
            value = getattr(self, name)
            require(0 < value < 1, f"data.{name}", value, "must be between 0 and 1")
        total = self.holdout_fraction + self.val_fraction
        require(total < 1, "data.holdout_fraction + data.val_fraction", total, "must be below 1, to leave a training split")

    @property
    def split_rule(self) -> SplitRule:
        return SplitRule(self.holdout_fraction, self.val_fraction, self.split_seed)

    @property
    def source(self) -> DataSource:
        return DataSource(Path(self.root), self.format, self.table, dict(self.columns),
                          None if self.labels is None else tuple(self.labels))
