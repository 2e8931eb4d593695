"""The split: every labelled post goes to train, validation or holdout, once, for all stages.

Seeded and stratified by label; the holdout is cut first, so a changed ``val_fraction`` never moves a
sample into it. The split is drawn from the labelled posts' ids and labels alone (train.txt, or the
table): which files featurize skips (``data.on_error: skip``) never moves a row; a skipped sample only
leaves its own split one row shorter. A table whose ``split`` column is filled fixes the split instead.

Writes ``splits.csv`` (``guid,label,split`` in file order) and ``split.json`` (``SplitInfo``: the
rule, the listing file's sha256, the label set, the counts, and the split's identity, a hash of
splits.csv). Every other stage reads these files; nothing recomputes a split.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.model_selection import train_test_split

from msc.core.errors import UserError
from msc.core.files import atomic_write_text
from msc.core.handoff import HandOff, read_handoff, write_handoff
from msc.core.owned import holds_handoff, refuse_foreign
from msc.data.dataset import listing_file, read_posts
from msc.data.posts import DataSource, Sample

SPLITS_FILE = "splits.csv"
SPLIT_INFO = "split.json"
SPLIT_NAMES = ("train", "val", "holdout")
REDO = "`python -m src.split` (or `dvc repro split`)"


@dataclass(frozen=True)
class SplitRule:
    """What decides the split besides the labelled posts (params.yaml's data section)."""

    holdout_fraction: float
    val_fraction: float
    seed: int


@dataclass(frozen=True)
class SplitInfo(HandOff):
    """``split.json``: how ``splits.csv`` beside it was made."""

    NAME: ClassVar[str] = "split"
    VERSION: ClassVar[int] = 2  # 2: labels
    WHAT: ClassVar[str] = "split description"
    WRITTEN_BY: ClassVar[str] = REDO

    identity: str  # sha256 of splits.csv, 12 hex digits: two models share a holdout only when these match
    parameters: dict  # SplitRule's fields, the label set as configured, and the listing file's sha256
    counts: dict  # split name -> rows
    labels: list  # the label set, in class order: every later stage and model uses it


@dataclass(frozen=True)
class SplitTable:
    """What the split stage decided, as read back by the later stages."""

    assignment: dict[str, tuple[str, str]]  # guid -> (label, split name)
    identity: str  # SplitInfo.identity
    labels: tuple[str, ...]  # the label set, in class order


def assign_splits(labels: list[str], holdout_fraction: float, val_fraction: float, seed: int) -> list[str]:
    """The split name of each labelled row, stratified by label and seeded."""
    rows = np.arange(len(labels))
    y = np.asarray(labels)
    try:
        rest, holdout = train_test_split(rows, test_size=holdout_fraction, stratify=y, random_state=seed)
        train, val = train_test_split(
            rest, test_size=val_fraction / (1 - holdout_fraction), stratify=y[rest], random_state=seed
        )
    except ValueError as error:
        raise UserError(
            f"cannot split {len(labels)} labelled samples into stratified train/validation/holdout "
            f"sets ({error}); every class needs a few samples in each split"
        ) from None
    names = np.empty(len(labels), dtype=object)
    names[train], names[val], names[holdout] = "train", "val", "holdout"
    return names.tolist()


MIN_CLASS_ROWS = 5  # fewer rows of a class in a split make its scores there noise, or leave it unmeasured


def thin_classes(labels: list[str], names: list[str], label_set: tuple[str, ...],
                 minimum: int = MIN_CLASS_ROWS) -> list[str]:
    """One warning per class of ``label_set`` with fewer than ``minimum`` rows in some split (none at all, too)."""
    warnings = []
    for label in label_set:
        counts = {split: sum(1 for lab, name in zip(labels, names) if lab == label and name == split)
                  for split in SPLIT_NAMES}
        thin = [f"{count} in {split}" for split, count in counts.items() if count < minimum]
        if thin:
            effect = ("without holdout rows it is not measured (metrics.json reports its F1 as null)"
                      if counts["holdout"] == 0 else "its scores there are noise")
            warnings.append(f"class {label} has {', '.join(thin)} (fewer than {minimum}): {effect}; "
                            "label more posts of it")
    return warnings


def split_parameters(rule: SplitRule, source: DataSource, listing: Path) -> dict:
    """What decides the split: a split file made from other values is stale."""
    return {"holdout_fraction": rule.holdout_fraction, "val_fraction": rule.val_fraction, "seed": rule.seed,
            "labels": list(source.labels) if source.labels is not None else None, "format": source.format,
            "table": source.table, "columns": dict(source.columns),
            "listing_sha256": hashlib.sha256(listing.read_bytes()).hexdigest()}


def split_names(posts: list[Sample], rule: SplitRule, listing: Path) -> list[str]:
    """Each labelled post's split: the table's fixed ``split`` column when filled, else drawn."""
    if not posts:
        raise UserError(f"{listing} has no labelled posts; label some (or run `python -m src.sample` for a synthetic "
                        "dataset)")
    if posts[0].split is None:
        return assign_splits([post.label for post in posts], rule.holdout_fraction, rule.val_fraction, rule.seed)
    names = [post.split for post in posts]
    empty = [name for name in SPLIT_NAMES if name not in names]
    if empty:
        raise UserError(f"{listing}: the split column puts no labelled post in {' or '.join(empty)}; every split needs "
                        "posts (train to fit, val to select, holdout to report)")
    return names


def write_splits(source: DataSource, splits_dir: str | Path, rule: SplitRule, force: bool = False) -> SplitInfo:
    """Assign every labelled post of ``source`` and write splits.csv and split.json into ``splits_dir``;
    refuses to replace such files that the split stage did not write, unless ``force``."""
    folder = Path(splits_dir)
    ours = force or holds_handoff(folder / SPLIT_INFO, SplitInfo.NAME)
    refuse_foreign([("data.splits_dir", folder / name, ours) for name in (SPLITS_FILE, SPLIT_INFO)], "split", "--force")
    dataset = read_posts(source, with_test=False)
    posts, labels, listing = dataset.labelled, dataset.labels, listing_file(source)
    names = split_names(posts, rule, listing)
    for warning in thin_classes([post.label for post in posts], names, labels):
        print(f"warning: {listing}: {warning}", file=sys.stderr)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["guid", "label", "split"])
    writer.writerows((post.guid, post.label, name) for post, name in zip(posts, names))
    text = table.getvalue()
    info = SplitInfo(identity=hashlib.sha256(text.encode()).hexdigest()[:12],
                     parameters=split_parameters(rule, source, listing),
                     counts={name: names.count(name) for name in SPLIT_NAMES}, labels=list(labels))
    atomic_write_text(folder / SPLITS_FILE, text)
    write_handoff(folder / SPLIT_INFO, info)
    return info


def read_splits(source: DataSource, splits_dir: str | Path, rule: SplitRule) -> SplitTable:
    """The split stage's decision, read back from its files.

    Stops with a sentence when they are missing or were made with another rule, label set or
    listing file than ``source``'s.
    """
    folder = Path(splits_dir)
    if not (folder / SPLITS_FILE).is_file():
        raise UserError(f"no split in '{folder}/' ({SPLITS_FILE} and {SPLIT_INFO}): run {REDO} first")
    info = read_handoff(SplitInfo, folder / SPLIT_INFO)
    listing = listing_file(source)
    if not listing.is_file():
        raise UserError(f"{listing} is missing, so the split in '{folder}/' cannot be checked against it; "
                        "set data.root (and data.table) in params.yaml to the dataset")
    current = split_parameters(rule, source, listing)
    changed = [key for key in current if info.parameters.get(key) != current[key]]
    if changed:
        raise UserError(f"the split in '{folder}/' is stale: {', '.join(changed)} changed since it was made; run {REDO}")
    # The identity is the hash of the bytes read here, so the split used is the one it names: a split
    # rewritten between the two reads (or one file copied from elsewhere) is refused, never mixed.
    raw = (folder / SPLITS_FILE).read_bytes()
    if hashlib.sha256(raw).hexdigest()[:12] != info.identity:
        raise UserError(f"'{folder / SPLITS_FILE}' is not the split that '{folder / SPLIT_INFO}' describes (the split "
                        f"was rewritten while it was read, or a file was copied in): run {REDO} again")
    text = raw.decode("utf-8")  # split wrote it as UTF-8, and the hash says these are its bytes
    assignment = {row["guid"]: (row["label"], row["split"]) for row in csv.DictReader(io.StringIO(text, newline=""))}
    return SplitTable(assignment, info.identity, tuple(info.labels))
