"""The split: every guid of train.txt goes to train, validation or holdout, once, for all stages.

Seeded and stratified by label; the holdout is cut first, so a changed ``val_fraction`` never moves a
sample into it. The split is drawn from train.txt's guids and labels alone: which files featurize
skips (``data.on_error: skip``) never moves a row; a skipped sample only leaves its own split one row
shorter.

Writes ``splits.csv`` (``guid,label,split`` in train.txt order) and ``split.json`` (``SplitInfo``: the
rule, train.txt's sha256, the counts, and the split's identity, a hash of splits.csv). Every other
stage reads these files; nothing recomputes a split.
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
from msc.data.dataset import TRAIN_FILE, read_label_file

SPLITS_FILE = "splits.csv"
SPLIT_INFO = "split.json"
SPLIT_NAMES = ("train", "val", "holdout")
REDO = "`python -m src.split` (or `dvc repro split`)"


@dataclass(frozen=True)
class SplitRule:
    """What decides the split besides train.txt (params.yaml's data section)."""

    holdout_fraction: float
    val_fraction: float
    seed: int


@dataclass(frozen=True)
class SplitInfo(HandOff):
    """``split.json``: how ``splits.csv`` beside it was made."""

    NAME: ClassVar[str] = "split"
    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "split description"
    WRITTEN_BY: ClassVar[str] = REDO

    identity: str  # sha256 of splits.csv, 12 hex digits: two models share a holdout only when these match
    parameters: dict  # SplitRule's fields and train_file_sha256
    counts: dict  # split name -> rows


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


def thin_classes(labels: list[str], names: list[str], minimum: int = MIN_CLASS_ROWS) -> list[str]:
    """One warning per class with fewer than ``minimum`` rows in some split."""
    warnings = []
    for label in sorted(set(labels)):
        counts = {split: sum(1 for lab, name in zip(labels, names) if lab == label and name == split)
                  for split in SPLIT_NAMES}
        thin = [f"{count} in {split}" for split, count in counts.items() if count < minimum]
        if thin:
            effect = ("without holdout rows it is not measured (metrics.json reports its F1 as null)"
                      if counts["holdout"] == 0 else "its scores there are noise")
            warnings.append(f"class {label} has {', '.join(thin)} (fewer than {minimum}): {effect}; "
                            "add samples of it to train.txt")
    return warnings


def split_parameters(rule: SplitRule, train_file: Path) -> dict:
    """What decides the split: a split file made from other values is stale."""
    return {"holdout_fraction": rule.holdout_fraction, "val_fraction": rule.val_fraction, "seed": rule.seed,
            "train_file_sha256": hashlib.sha256(train_file.read_bytes()).hexdigest()}


def write_splits(data_root: str | Path, splits_dir: str | Path, rule: SplitRule) -> SplitInfo:
    """Assign every guid of ``data_root``'s train.txt and write splits.csv and split.json into ``splits_dir``."""
    train_file = Path(data_root) / TRAIN_FILE
    rows = read_label_file(train_file, test=False)
    if not rows:
        raise UserError(f"{train_file} has its header but no samples; list the labelled samples as 'guid,tag' "
                        "lines (or run `python -m src.sample` for a synthetic dataset)")
    labels = [label for _, label, _ in rows]
    names = assign_splits(labels, rule.holdout_fraction, rule.val_fraction, rule.seed)
    for warning in thin_classes(labels, names):
        print(f"warning: {train_file}: {warning}", file=sys.stderr)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["guid", "label", "split"])
    writer.writerows((guid, label, name) for (guid, label, _), name in zip(rows, names))
    text = table.getvalue()
    info = SplitInfo(identity=hashlib.sha256(text.encode()).hexdigest()[:12],
                     parameters=split_parameters(rule, train_file),
                     counts={name: names.count(name) for name in SPLIT_NAMES})
    folder = Path(splits_dir)
    atomic_write_text(folder / SPLITS_FILE, text)
    write_handoff(folder / SPLIT_INFO, info)
    return info


def read_splits(data_root: str | Path, splits_dir: str | Path, rule: SplitRule) -> tuple[dict[str, tuple[str, str]], str]:
    """guid -> (label, split) from the split stage's files, and the split's identity.

    Stops with a sentence when they are missing or were made with another rule or another
    train.txt than the one in ``data_root``.
    """
    folder = Path(splits_dir)
    if not (folder / SPLITS_FILE).is_file():
        raise UserError(f"no split in '{folder}/' ({SPLITS_FILE} and {SPLIT_INFO}): run {REDO} first")
    info = read_handoff(SplitInfo, folder / SPLIT_INFO)
    train_file = Path(data_root) / TRAIN_FILE
    if not train_file.is_file():
        raise UserError(f"{train_file} is missing, so the split in '{folder}/' cannot be checked against it; "
                        "set data.root in params.yaml to the dataset folder")
    current = split_parameters(rule, train_file)
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
    return assignment, info.identity


