import csv
import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest

from msc.core.labels import COURSE_LABELS
from msc.data.synthetic import (
    CUE_COLOURS,
    CUE_WORDS,
    FILLER_WORDS,
    IMAGE_NOISE,
    PRIOR,
    TEST_FRACTION,
    TEXT_NOISE,
    bayes_accuracy,
    bayes_predict,
    cue_colours,
    cue_words,
    label_prior,
    noisy_cue,
    stored_story,
    write_dataset,
)
from src import sample
from tests.helpers import REPO, TEST_IMAGE_SCALE


def simulated_accuracy(prior: dict, draws: int, seed: int) -> dict:
    """The Bayes rule's hit rate on ``draws`` posts of the generative story."""
    rng = random.Random(seed)
    labels = list(prior)
    # The rule's answer for each pair of cues, asked once (a draw then costs two noisy cues and lookups).
    rule = {(t, v): bayes_predict(t, v, prior) for t in [*labels, None] for v in [*labels, None]}
    hits = {"text": 0, "image": 0, "both": 0}
    for _ in range(draws):
        y = rng.choices(labels, weights=[prior[c] for c in labels])[0]
        t, v = noisy_cue(y, TEXT_NOISE, rng, labels), noisy_cue(y, IMAGE_NOISE, rng, labels)
        hits["text"] += rule[t, None] == y
        hits["image"] += rule[None, v] == y
        hits["both"] += rule[t, v] == y
    return {key: count / draws for key, count in hits.items()}


def test_bayes_accuracy_matches_simulation():
    """The exact sums against 200k draws of the generative story."""
    simulated, exact = simulated_accuracy(PRIOR, 200_000, seed=0), bayes_accuracy(PRIOR)
    for key in simulated:
        assert simulated[key] == pytest.approx(exact[key], abs=0.005)
    assert exact["both"] > max(exact["text"], exact["image"]) + 0.05


def brute_force_accuracy(prior: dict, text_noise: float, image_noise: float) -> dict:
    """Independently of the module: the joint table P(y, t, v) and the sum of its column maxima."""
    k = len(prior)
    p_y = np.array(list(prior.values()))  # (K,)
    text = np.full((k, k), text_noise / (k - 1)) + np.eye(k) * (1 - text_noise - text_noise / (k - 1))  # P(t|y)
    image = np.full((k, k), image_noise / (k - 1)) + np.eye(k) * (1 - image_noise - image_noise / (k - 1))
    joint = p_y[:, None, None] * text[:, :, None] * image[:, None, :]  # (K y, K t, K v)
    return {"text": joint.sum(2).max(0).sum(), "image": joint.sum(1).max(0).sum(), "both": joint.max(0).sum()}


@pytest.mark.parametrize("labels", [("yes", "no"), tuple("abcde"), tuple("abcdefghij"), COURSE_LABELS])
def test_bayes_accuracy_for_any_label_set(labels):
    prior = label_prior(labels)
    assert list(prior) == list(labels) and sum(prior.values()) == pytest.approx(1)
    exact = bayes_accuracy(prior)
    assert exact == pytest.approx(brute_force_accuracy(prior, TEXT_NOISE, IMAGE_NOISE), abs=1e-12)
    simulated = simulated_accuracy(prior, 40_000, seed=len(labels))
    assert simulated == pytest.approx(exact, abs=0.012)  # about 5 standard errors
    if len(labels) > 2:  # with two labels a conflict is a coin the prior decides
        assert exact["both"] > max(exact["text"], exact["image"]) + 0.03


def test_other_label_sets_draw_cues_from_the_backbones_words_and_hues():
    vocabulary = {w for ws in CUE_WORDS.values() for w in ws} | set(FILLER_WORDS)
    for k in range(2, 11):
        labels = [f"c{i}" for i in range(k)]
        words, fillers = cue_words(labels)
        groups = [set(ws) for ws in words.values()] + [set(fillers)]
        assert all(len(g) >= 3 for g in groups[:-1]) and fillers
        assert set().union(*groups) == vocabulary and sum(map(len, groups)) == len(vocabulary)  # a partition
        assert len(set(cue_colours(labels).values())) == k


def test_the_default_story_is_the_course_one():
    """What keeps ``python -m src.sample``'s files and the tiny backbone's vocabulary as they were."""
    assert cue_words(COURSE_LABELS) == (CUE_WORDS, FILLER_WORDS)
    assert cue_colours(COURSE_LABELS) == CUE_COLOURS
    assert label_prior(COURSE_LABELS) == PRIOR


def read_table(root: Path) -> list[dict]:
    with (root / "posts.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("labels", ["yes,no", "a,b,c,d,e"])
def test_a_table_sample_has_the_columns_labels_images_and_ceiling(tmp_path, labels, capsys):
    root = tmp_path / "table"
    assert sample.main(["--out", str(root), "--n", "120", "--seed", "4", "--format", "table", "--labels", labels,
                        "--backbone-out", str(tmp_path / "clip")]) == 0
    assert f"data.root: {root}, data.table: posts.csv" in capsys.readouterr().out
    names = labels.split(",")
    posts = read_table(root)
    assert list(posts[0]) == ["id", "text", "image_path", "label"] and len(posts) == 120
    n_test = round(120 * TEST_FRACTION)
    assert [p["label"] for p in posts[-n_test:]] == [""] * n_test
    assert {p["label"] for p in posts[:-n_test]} == set(names)
    for post in posts:
        assert not Path(post["image_path"]).is_absolute() and (root / post["image_path"]).is_file()
    cues = list(csv.DictReader((root / "cues.csv").open(newline="")))
    assert [c["guid"] for c in cues] == [p["id"] for p in posts]
    assert all(c["label"] == p["label"] for c, p in zip(cues, posts) if p["label"])
    story = stored_story(root)
    assert list(story["prior"]) == names
    assert json.loads((root / "bayes.json").read_text())["bayes_accuracy"] == pytest.approx(bayes_accuracy(**story))
    assert not (root / "train.txt").exists() and not (root / "data").exists()


def test_the_written_cues_follow_the_story(tmp_path):
    """The cues of a written five-label table against the stored ceiling (a Monte-Carlo estimate)."""
    root = tmp_path / "table"
    write_dataset(root, n=400, seed=5, labels=tuple("abcde"), layout="table", image_scale=TEST_IMAGE_SCALE)
    cues = list(csv.DictReader((root / "cues.csv").open(newline="")))
    story = stored_story(root)
    exact = bayes_accuracy(**story)
    for key, use_text, use_image in (("text", 1, 0), ("image", 0, 1), ("both", 1, 1)):
        hits = [bayes_predict(c["text_cue"] if use_text else None, c["image_cue"] if use_image else None, **story)
                == c["label"] for c in cues]
        assert np.mean(hits) == pytest.approx(exact[key], abs=4 * np.sqrt(0.25 / len(cues)))
    pairs = {(c["text_cue"], c["image_cue"]) for c in cues}
    assert any(t != v for t, v in pairs), "some samples must conflict"
    assert {c["label"] for c in cues} <= set("abcde")


@pytest.mark.parametrize("labels", ["a", "a,a", "a,,b", "", ",".join(itertools.islice(map(str, itertools.count()), 11))])
def test_a_bad_label_list_is_a_sentence(tmp_path, capsys, labels):
    assert sample.main(["--out", str(tmp_path / "d"), "--labels", labels, "--no-data"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --labels") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "d").exists()


def test_sample_writes_course_layout_and_stores_the_ceiling(sample_root):
    summary = json.loads((sample_root / "bayes.json").read_text())
    assert summary["bayes_accuracy"] == pytest.approx(bayes_accuracy(PRIOR))
    rows = list(csv.DictReader((sample_root / "cues.csv").open()))
    assert len(rows) == 240
    assert any(r["text_cue"] != r["image_cue"] for r in rows), "some samples must conflict"
    assert (sample_root / "train.txt").read_text().startswith("guid,tag\n")
    assert set((sample_root / "test_without_label.txt").read_text().split()[1:]) <= {f"{r['guid']},null" for r in rows}
    encodings = set()
    for r in rows[:80]:
        raw = (sample_root / "data" / f"{r['guid']}.txt").read_bytes()
        try:
            raw.decode("utf-8")
            encodings.add("utf-8")
        except UnicodeDecodeError:
            encodings.add("gb18030")
    assert encodings == {"utf-8", "gb18030"}


CLIP_BPE = REPO.parent / "shared" / "clip-bpe"


@pytest.mark.skipif(not (CLIP_BPE / "vocab.json").is_file(), reason="needs ../shared/clip-bpe")
def test_a_sample_backbone_can_tokenize_as_the_real_clip(tmp_path):
    from msc.model.backbone import load_backbone
    from msc.model.tiny import write_backbone

    write_backbone(tmp_path / "clip", "tiny", seed=0, tokenizer_folder=CLIP_BPE)
    backbone = load_backbone(str(tmp_path / "clip"), device="cpu")
    tokenizer = backbone.processor.tokenizer
    assert len(tokenizer) == 49408
    # Whole words are single BPE tokens: start, 3 words, end.
    assert backbone.tokenize(["so happy today"], 77)["input_ids"].shape[1] == 5
    pooled = backbone.encode_text(**backbone.tokenize(["so happy today #blessed"], 77)).pooled
    assert pooled.shape == (1, backbone.dim)


def test_a_tokenizer_folder_without_the_bpe_files_is_a_sentence(tmp_path):
    from msc.core.errors import UserError
    from msc.model.tiny import write_backbone

    with pytest.raises(UserError, match="needs vocab.json and merges.txt"):
        write_backbone(tmp_path / "clip", "tiny", seed=0, tokenizer_folder=tmp_path)
