"""Label issues: the labelled posts whose given label is most likely wrong, from out-of-fold probabilities.

MVSA-Single's labels are known to be noisy. A row's out-of-fold probabilities come from a model that did
not train on it (msc/train/crossfit.py), so a confident disagreement with its label is evidence against
the label, not memorisation of it. cleanlab ranks the rows by its label quality score (the probability the
model gives the given label: self-confidence; lowest first) and flags those its confident-learning filter
(prune by noise rate) counts as issues.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

COLUMNS = ["id", "given_label", "suggested_label", "score", "flagged"]


def rank_label_issues(ids: list[str], labels: np.ndarray, probs: np.ndarray, names: tuple[str, ...]) -> pd.DataFrame:
    """One row per labelled post, most likely wrong first: ``id``, ``given_label`` (from (n,) class ids
    ``labels``), ``suggested_label`` (the argmax of its (n, C) out-of-fold ``probs``), ``score`` (cleanlab's
    label quality in [0, 1], low = likely wrong) and ``flagged`` (cleanlab's filter counts it as an issue).
    Ties in the score keep the input order, so the ranking is deterministic."""
    labels, probs = np.asarray(labels, dtype=np.int64), np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)  # cleanlab checks that rows sum to 1 (float32 ones may not)
    scores = get_label_quality_scores(labels, probs, method="self_confidence")
    # n_jobs=1: cleanlab's default forks a process pool per class, which hung for 600 s under pytest in a
    # process whose torch threads were already running (a fork after threads); the rows are few.
    flagged = find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1) if len(set(labels)) > 1 \
        else np.zeros(len(labels), dtype=bool)
    order = np.argsort(scores, kind="stable")
    table = pd.DataFrame({"id": [ids[i] for i in order], "given_label": [names[labels[i]] for i in order],
                          "suggested_label": [names[i] for i in probs[order].argmax(axis=1)],
                          "score": scores[order].round(6), "flagged": flagged[order]})
    return table[COLUMNS]


def top_k_precision(table: pd.DataFrame, wrong_ids: set[str], k: int | None = None) -> float:
    """Share of the first ``k`` rows of ``table`` (default: as many as ``wrong_ids``) whose id is in ``wrong_ids``."""
    k = len(wrong_ids) if k is None else k
    return float(table["id"].head(k).isin(wrong_ids).mean()) if k else 0.0
