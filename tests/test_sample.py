import csv
import json
import random
from pathlib import Path

import pytest

from msc.core.labels import LABELS
from msc.data.synthetic import IMAGE_NOISE, PRIOR, TEXT_NOISE, bayes_accuracy, bayes_predict, noisy_cue


def test_bayes_accuracy_matches_simulation():
    """The exact sums against 200k draws of the generative story."""
    rng = random.Random(0)
    hits = {"text": 0, "image": 0, "both": 0}
    draws = 200_000
    for _ in range(draws):
        y = rng.choices(LABELS, weights=[PRIOR[c] for c in LABELS])[0]
        t, v = noisy_cue(y, TEXT_NOISE, rng), noisy_cue(y, IMAGE_NOISE, rng)
        hits["text"] += bayes_predict(t, None) == y
        hits["image"] += bayes_predict(None, v) == y
        hits["both"] += bayes_predict(t, v) == y
    exact = bayes_accuracy()
    for key in hits:
        assert hits[key] / draws == pytest.approx(exact[key], abs=0.005)
    assert exact["both"] > max(exact["text"], exact["image"]) + 0.05


def test_sample_writes_course_layout_and_stores_the_ceiling(sample_root):
    summary = json.loads((sample_root / "bayes.json").read_text())
    assert summary["bayes_accuracy"] == pytest.approx(bayes_accuracy())
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


CLIP_BPE = Path(__file__).resolve().parents[2] / "shared" / "clip-bpe"


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
