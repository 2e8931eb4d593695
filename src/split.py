"""Stage ``split``: every guid of train.txt goes to train, validation or holdout, once, for all stages.

Seeded and stratified by label; the holdout is cut first, so a changed ``data.val_fraction`` never
moves a sample into it. The split is drawn from train.txt's guids and labels alone: which files
``featurize`` skips (``data.on_error: skip``) never moves a row; a skipped sample only leaves its
own split one row shorter.

Writes ``<data.splits_dir>/splits.csv`` (``guid,label,split`` in train.txt order) and
``split.json`` (the parameters, train.txt's sha256, the counts, and the split's identity: a hash
of splits.csv). Every other stage reads these files; nothing recomputes a split.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from src.config import Config, DataConfig, load_config
from src.data import TRAIN_FILE, read_label_file
from src.errors import UserError, cli
from src.features import FeatureCache
from src.io import atomic_write_text

SPLITS_FILE = "splits.csv"
SPLIT_INFO = "split.json"
SPLIT_NAMES = ("train", "val", "holdout")


@dataclass(frozen=True)
class Splits:
    """Row indices into a feature cache's labelled rows, and the identity of the split they come from."""

    train: np.ndarray
    val: np.ndarray
    holdout: np.ndarray
    identity: str  # two models share a holdout only when their split identities match


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


def split_parameters(data: DataConfig, train_file: Path) -> dict:
    """What decides the split: a split file made from other values is stale."""
    return {"holdout_fraction": data.holdout_fraction, "val_fraction": data.val_fraction, "seed": data.split_seed,
            "train_file_sha256": hashlib.sha256(train_file.read_bytes()).hexdigest()}


def write_splits(data: DataConfig) -> dict:
    """Assign every guid of train.txt and write splits.csv and split.json; returns split.json's content."""
    train_file = Path(data.root) / TRAIN_FILE
    rows = read_label_file(train_file, test=False)
    names = assign_splits([label for _, label, _ in rows], data.holdout_fraction, data.val_fraction, data.split_seed)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["guid", "label", "split"])
    writer.writerows((guid, label, name) for (guid, label, _), name in zip(rows, names))
    text = table.getvalue()
    info = {
        "identity": hashlib.sha256(text.encode()).hexdigest()[:12],
        "parameters": split_parameters(data, train_file),
        "counts": {name: names.count(name) for name in SPLIT_NAMES},
    }
    folder = Path(data.splits_dir)
    atomic_write_text(folder / SPLITS_FILE, text)
    atomic_write_text(folder / SPLIT_INFO, json.dumps(info, indent=2) + "\n")
    return info


def read_splits(data: DataConfig) -> tuple[dict[str, tuple[str, str]], str]:
    """guid -> (label, split) from the split stage's files, and the split's identity.

    Stops with a sentence when they are missing or were made from other parameters or another
    train.txt than ``data`` names.
    """
    folder = Path(data.splits_dir)
    redo = "run `python -m src.split` (or `dvc repro split`)"
    if not (folder / SPLITS_FILE).is_file() or not (folder / SPLIT_INFO).is_file():
        raise UserError(f"no split in '{folder}/' ({SPLITS_FILE} and {SPLIT_INFO}): {redo} first")
    info = json.loads((folder / SPLIT_INFO).read_text())
    train_file = Path(data.root) / TRAIN_FILE
    if not train_file.is_file():
        raise UserError(f"{train_file} is missing, so the split in '{folder}/' cannot be checked against it; "
                        "set data.root in params.yaml to the dataset folder")
    current = split_parameters(data, train_file)
    changed = [key for key in current if info["parameters"].get(key) != current[key]]
    if changed:
        raise UserError(f"the split in '{folder}/' is stale: {', '.join(changed)} changed since it was made; {redo}")
    with (folder / SPLITS_FILE).open(newline="") as handle:
        assignment = {row["guid"]: (row["label"], row["split"]) for row in csv.DictReader(handle)}
    return assignment, info["identity"]


def load_splits(data: DataConfig, cache: FeatureCache) -> Splits:
    """The split stage's split as rows of ``cache``. A labelled sample that featurize skipped is in
    no split; a cached labelled guid the split does not know means one of the two is stale."""
    assignment, identity = read_splits(data)
    rows: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for row, (guid, label) in enumerate(zip(cache.guids, cache.manifest["labels"])):
        if assignment.get(guid, (None,))[0] != label:
            raise UserError(f"the feature cache '{cache.folder}' and the split in '{data.splits_dir}/' disagree on "
                            f"guid {guid}: they were made from different train.txt files; run `dvc repro` "
                            "(or `python -m src.split` and `python -m src.featurize`)")
        rows[assignment[guid][1]].append(row)
    return Splits(*(np.array(rows[name], dtype=np.int64) for name in SPLIT_NAMES), identity=identity)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Assign every labelled guid to train, validation or holdout.")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    config: Config = load_config(args.params)
    info = write_splits(config.data)
    counts = ", ".join(f"{info['counts'][name]} {name}" for name in SPLIT_NAMES)
    print(f"split {info['identity']}: {counts}; wrote {Path(config.data.splits_dir) / SPLITS_FILE}")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
