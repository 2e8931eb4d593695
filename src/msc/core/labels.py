"""Label sets: the ordered class names a dataset and a model share.

The order is the class order everywhere: label ids, logit columns, probability columns
(``p_<label>``), confusion-matrix rows. A dataset's set comes from ``data.labels`` or its labelled
rows (msc/data/dataset.py), is recorded in the split and the feature cache, and travels with every
logged model in its head spec.
"""

from __future__ import annotations

import re
from typing import Sequence

from msc.core.errors import UserError

COURSE_LABELS = ("positive", "neutral", "negative")  # MVSA-Single's, in the course's order
# Letters, digits, spaces, "_", "-" and ".": a label names MLflow metrics (f1_<label>) and
# DataFrame columns (p_<label>), and the course's label files are comma-separated.
LABEL_NAME = re.compile(r"[\w.\- ]+")


def check_label_set(labels: Sequence[str], where: str) -> tuple[str, ...]:
    """``labels`` as a tuple, or a UserError naming ``where`` (a params key or a file) when it is not
    an ordered set of at least two valid, distinct names."""
    names = tuple(labels)
    bad = [name for name in names if not isinstance(name, str) or not LABEL_NAME.fullmatch(name) or name != name.strip()]
    if bad:
        raise UserError(f"{where}: label {bad[0]!r} is not a usable name; use letters, digits, spaces, '_', '-' or "
                        "'.', with no space at either end")
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise UserError(f"{where}: label {repeated[0]!r} is listed twice; list every label once")
    if len(names) < 2:
        raise UserError(f"{where}: {len(names)} label ({', '.join(names) or 'none'}); a classifier needs at least two "
                        "labels: label more posts, or list the label set in data.labels")
    return names


def probability_columns(labels: Sequence[str]) -> list[str]:
    """``p_<label>`` per label, in class order: the model's and every results table's probability columns."""
    return [f"p_{label}" for label in labels]
