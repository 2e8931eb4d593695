"""Label sets: the ordered class names a dataset and a model share.

The order is the class order everywhere: label ids, logit columns, probability columns
(``p_<label>``), confusion-matrix rows. A dataset's set comes from ``data.labels`` or its labelled
rows (msc/data/dataset.py), is recorded in the split and the feature cache, and travels with every
logged model in its head spec.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Mapping, Sequence

from msc.core.errors import UserError

COURSE_LABELS = ("positive", "neutral", "negative")  # MVSA-Single's, in the course's order
# Letters, digits, spaces, "_", "-" and ".": a label names MLflow metrics (f1_<label>) and
# DataFrame columns (p_<label>), and the course's label files are comma-separated.
LABEL_NAME = re.compile(r"[\w.\- ]+")
# What tables and pandas read as "no value", and the course layout's tag of an unlabelled post: a class of
# that name would vanish from every CSV it is written to.
RESERVED = ("null", "none", "nan", "na")


def label_problem(name) -> str | None:
    """Why ``name`` cannot be a label (a sentence's second half), or None when it can."""
    if isinstance(name, bool):  # YAML reads yes/no/true/false unquoted as booleans
        return "YAML read it as a boolean; quote the label, as in ['yes', 'no']"
    if not isinstance(name, str) or not LABEL_NAME.fullmatch(name) or name != name.strip():
        return "not a usable label name; use letters, digits, spaces, '_', '-' or '.', with no space at either end"
    if name.lower() in RESERVED:
        return f"a name tables read as a missing value ({', '.join(RESERVED)}); rename the label"
    return None


def check_label_set(labels: Sequence[str], where: str) -> tuple[str, ...]:
    """``labels`` as a tuple, or a UserError naming ``where`` (a params key or a file) when it is not
    an ordered set of at least two valid, distinct names."""
    names = tuple(labels)
    for name in names:
        if problem := label_problem(name):
            raise UserError(f"{where}: label {name!r}: {problem}")
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise UserError(f"{where}: label {repeated[0]!r} is listed twice; list every label once")
    if len(names) < 2:
        raise UserError(f"{where}: {len(names)} label ({', '.join(names) or 'none'}); a classifier needs at least two "
                        "labels: label more posts, or list the label set in data.labels")
    return names


def fold(name: str) -> str:
    """The form two spellings of one label share: NFC, then case-folded ('Positive' and 'POSITIVE' give
    'positive'; 'e' followed by a combining acute accent gives the one character 'é')."""
    return unicodedata.normalize("NFC", name).casefold()


def spelling_hint(name: str, labels: Sequence[str]) -> str:
    """", which differs from 'positive' only in case or Unicode form" when ``name`` folds to a label of
    ``labels``, else "": for sentences that refuse a label outside the set."""
    same = [label for label in labels if fold(label) == fold(name)]
    return f", which differs from {same[0]!r} only in case or Unicode form (write it as {same[0]!r})" if same else ""


def refuse_spellings(first_rows: Mapping[str, str], declared: Sequence[str] | None, where: str) -> None:
    """Refuse two labels of ``first_rows`` (each label as written -> its first row, e.g. "row 3, id '12'")
    that are equal after ``fold``: they would train as two classes. Labels that ``declared`` (data.labels)
    lists, both of them, are distinct on purpose."""
    groups: dict[str, list[str]] = {}
    for name in first_rows:
        groups.setdefault(fold(name), []).append(name)
    for names in groups.values():
        if len(names) > 1 and not (declared is not None and all(name in declared for name in names)):
            a, b = names[:2]
            raise UserError(f"{where}: the labels {a!r} ({first_rows[a]}) and {b!r} ({first_rows[b]}) are equal after "
                            "case folding and Unicode normalisation (NFC), and would be trained as two classes; write "
                            "them one way, or list both in data.labels if they are different classes on purpose")


def probability_columns(labels: Sequence[str]) -> list[str]:
    """``p_<label>`` per label, in class order: the model's and every results table's probability columns."""
    return [f"p_{label}" for label in labels]
