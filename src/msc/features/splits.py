"""The split stage's split as rows of a feature cache."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msc.core.errors import UserError
from msc.data.config import DataConfig
from msc.data.split import SPLIT_NAMES, read_splits
from msc.features.cache import FeatureCache


@dataclass(frozen=True)
class Splits:
    """Row indices into a feature cache's labelled rows, and the identity of the split they come from."""

    train: np.ndarray
    val: np.ndarray
    holdout: np.ndarray
    identity: str  # two models share a holdout only when their split identities match


def load_splits(data: DataConfig, cache: FeatureCache) -> Splits:
    """The split stage's split as rows of ``cache``. A labelled sample that featurize skipped is in
    no split; a cached labelled guid the split does not know means one of the two is stale."""
    split = read_splits(data.source, data.splits_dir, data.split_rule)
    if split.labels != cache.label_names:
        raise UserError(f"the feature cache '{cache.folder}' has the labels {', '.join(cache.label_names)} and the split "
                        f"in '{data.splits_dir}/' has {', '.join(split.labels)}: they were made from different data or "
                        "data.labels; run `dvc repro` (or `python -m src.split` and `python -m src.featurize`)")
    assignment = split.assignment
    rows: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for row, (guid, label) in enumerate(zip(cache.guids, cache.manifest.labels)):
        if assignment.get(guid, (None,))[0] != label:
            raise UserError(f"the feature cache '{cache.folder}' and the split in '{data.splits_dir}/' disagree on "
                            f"guid {guid}: they were made from different label files; run `dvc repro` "
                            "(or `python -m src.split` and `python -m src.featurize`)")
        rows[assignment[guid][1]].append(row)
    return Splits(*(np.array(rows[name], dtype=np.int64) for name in SPLIT_NAMES), identity=split.identity)
