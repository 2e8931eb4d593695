"""Label issues (msc/train/label_issues.py) on posts whose labels were flipped, with the ids recorded."""

import random

import numpy as np

from msc.core.labels import COURSE_LABELS
from msc.data import synthetic
from msc.train.label_issues import COLUMNS, rank_label_issues, top_k_precision


def flipped_posts(n: int, seed: int, flip_rate: float = 0.1):
    """Bayes posteriors (n, 3) of the sample's cue model (the course's prior, noises 0.25 and 0.30), the
    given labels with ``flip_rate`` of them flipped to another label, and the flipped ids."""
    rng, labels, prior = random.Random(seed), list(COURSE_LABELS), synthetic.PRIOR
    true = [rng.choices(labels, weights=[prior[y] for y in labels])[0] for _ in range(n)]
    cues = [(synthetic.noisy_cue(y, 0.25, rng, labels), synthetic.noisy_cue(y, 0.30, rng, labels)) for y in true]
    probs = np.array([[prior[y] * synthetic.cue_likelihood(t, y, 0.25, 3) * synthetic.cue_likelihood(v, y, 0.30, 3)
                       for y in labels] for t, v in cues])
    flipped = set(rng.sample(range(n), round(flip_rate * n)))
    given = [rng.choice([o for o in labels if o != y]) if i in flipped else y for i, y in enumerate(true)]
    return probs / probs.sum(1, keepdims=True), np.array([labels.index(y) for y in given]), {f"p{i}" for i in flipped}


def test_flipped_labels_rank_first_well_above_chance():
    probs, given, wrong = flipped_posts(1000, 0)
    table = rank_label_issues([f"p{i}" for i in range(1000)], given, probs, COURSE_LABELS)
    assert list(table.columns) == COLUMNS and len(table) == 1000
    assert (np.diff(table["score"]) >= 0).all()  # most likely wrong first
    precision = top_k_precision(table, wrong)
    assert precision > 0.10 + 0.3  # chance is the flip rate, 0.10
    flagged = table[table["flagged"]]
    assert flagged["id"].isin(wrong).mean() > 0.4


def test_the_ranking_is_deterministic_and_suggests_the_argmax():
    probs, given, _ = flipped_posts(300, 1)
    ids = [f"p{i}" for i in range(300)]
    first, second = rank_label_issues(ids, given, probs, COURSE_LABELS), rank_label_issues(ids, given, probs, COURSE_LABELS)
    assert first.equals(second)
    by_id = dict(zip(ids, probs.argmax(1)))
    assert all(COURSE_LABELS[by_id[i]] == s for i, s in zip(first["id"], first["suggested_label"]))
