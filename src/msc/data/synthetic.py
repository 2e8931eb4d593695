"""The offline sample: a synthetic dataset in the course layout with a known Bayes ceiling.

The data has a known generative story, so the best possible accuracy is computable exactly:

* the label y follows the real MVSA-Single class prior;
* the text carries a cue class t and the image a cue class v, each equal to y with probability
  ``1 - noise`` and otherwise one of the two other classes, uniformly; t and v are independent
  given y, so some samples have conflicting modalities;
* the Bayes-optimal rule predicts argmax_y P(y) P(t|y) P(v|y), and its expected accuracy with
  text alone, image alone and both is a finite sum, printed and stored in ``bayes.json``.

``cues.csv`` beside the data keeps (guid, label, text_cue, image_cue), so the Bayes rule's
accuracy on any subset, such as the holdout split, can be computed too.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from msc.core.errors import UserError
from msc.core.files import atomic_write_text
from msc.core.labels import LABELS

# Class prior of the real train.txt: 2388 positive, 419 neutral, 1193 negative of 4000.
PRIOR = {"positive": 2388 / 4000, "neutral": 419 / 4000, "negative": 1193 / 4000}
TEXT_NOISE = 0.25  # P(text cue != label): text alone reaches 0.75 at best
IMAGE_NOISE = 0.25  # P(image cue != label): image alone 0.75, both 0.84
TEST_FRACTION = 511 / 4511  # the real test share

CUE_WORDS = {
    "positive": ["happy", "love", "great", "awesome", "beautiful", "wonderful", "blessed"],
    "neutral": ["meeting", "report", "schedule", "update", "notice", "listing", "agenda"],
    "negative": ["sad", "hate", "awful", "terrible", "angry", "broken", "disaster"],
}
FILLER_WORDS = ["the", "a", "my", "this", "our", "day", "city", "news", "photo", "team", "now", "so"]
EXTRAS = ["#tbt", "#photo", "😀", "🙏", "http://t.co/x1", "@friend", "RT", "!!", "…"]
# Image cue: the background colour family of each class (RGB), varied in brightness and noise.
CUE_COLOURS = {"positive": (235, 170, 40), "neutral": (128, 128, 128), "negative": (40, 60, 150)}


def cue_likelihood(cue: str, label: str, noise: float) -> float:
    """P(cue | label) under the symmetric noise model."""
    return 1 - noise if cue == label else noise / 2


def bayes_predict(text_cue: str | None, image_cue: str | None) -> str:
    """The Bayes-optimal label given the cues that are observed (None = modality unseen)."""

    def score(label: str) -> float:
        p = PRIOR[label]
        if text_cue is not None:
            p *= cue_likelihood(text_cue, label, TEXT_NOISE)
        if image_cue is not None:
            p *= cue_likelihood(image_cue, label, IMAGE_NOISE)
        return p

    return max(LABELS, key=score)


def bayes_accuracy() -> dict[str, float]:
    """Expected accuracy of the Bayes rule with text only, image only and both.

    Exact: the sum over every observable cue combination of max_y P(y, cues).
    """

    def accuracy(use_text: bool, use_image: bool) -> float:
        total = 0.0
        for t in LABELS if use_text else [None]:
            for v in LABELS if use_image else [None]:
                guess = bayes_predict(t, v)
                p = PRIOR[guess]
                if t is not None:
                    p *= cue_likelihood(t, guess, TEXT_NOISE)
                if v is not None:
                    p *= cue_likelihood(v, guess, IMAGE_NOISE)
                total += p
        return total

    return {"text": accuracy(True, False), "image": accuracy(False, True), "both": accuracy(True, True)}


def noisy_cue(label: str, noise: float, rng: random.Random) -> str:
    if rng.random() >= noise:
        return label
    return rng.choice([other for other in LABELS if other != label])


def make_text(cue: str, rng: random.Random) -> str:
    # Three cue words against two distractors: a random-weight text encoder pools all tokens
    # into one vector, and the cue must survive that for the Bayes ceiling to be reachable.
    words = rng.sample(CUE_WORDS[cue], 3) + rng.sample(FILLER_WORDS, 1) + rng.sample(EXTRAS, 1)
    rng.shuffle(words)
    return " ".join(words)


def make_image(cue: str, rng: random.Random) -> Image.Image:
    """A background in the cue's colour family, pixel noise and an uninformative shape."""
    width, height = rng.randint(160, 320), rng.randint(160, 320)
    brightness = rng.uniform(0.75, 1.25)
    colour = np.clip(np.array(CUE_COLOURS[cue]) * brightness, 0, 255)
    np_rng = np.random.default_rng(rng.getrandbits(32))
    pixels = colour + np_rng.normal(0, 20, size=(height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    box = sorted(rng.sample(range(width), 2)), sorted(rng.sample(range(height), 2))
    ImageDraw.Draw(image).ellipse(
        (box[0][0], box[1][0], box[0][1], box[1][1]), fill=tuple(rng.randint(0, 255) for _ in range(3))
    )
    return image


def write_dataset(out: Path, n: int, seed: int) -> dict:
    """Write ``n`` samples in the course layout to ``out``; returns the Bayes summary."""
    if n < 60:
        raise UserError(f"--n {n} is too small for stratified train/validation/holdout splits; use at least 60")
    rng = random.Random(seed)
    folder = out / "data"
    if out.exists():
        shutil.rmtree(out)
    folder.mkdir(parents=True)
    n_test = max(1, round(n * TEST_FRACTION))
    rows = []
    for index in range(n):
        guid = str(index + 1)
        label = rng.choices(LABELS, weights=[PRIOR[c] for c in LABELS])[0]
        text_cue, image_cue = noisy_cue(label, TEXT_NOISE, rng), noisy_cue(label, IMAGE_NOISE, rng)
        text = make_text(text_cue, rng)
        # About a quarter of the real texts are GB18030; mirror that with curly quotes and €.
        raw = f"“{text}” €{rng.randint(1, 99)}".encode("gb18030") if rng.random() < 0.25 else text.encode()
        (folder / f"{guid}.txt").write_bytes(raw)
        make_image(image_cue, rng).save(folder / f"{guid}.jpg", quality=90)
        rows.append((guid, label, text_cue, image_cue))
    labelled, test = rows[: n - n_test], rows[n - n_test :]
    (out / "train.txt").write_text("guid,tag\n" + "".join(f"{g},{y}\n" for g, y, _, _ in labelled))
    (out / "test_without_label.txt").write_text("guid,tag\n" + "".join(f"{g},null\n" for g, *_ in test))
    with (out / "cues.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("guid", "label", "text_cue", "image_cue"), *rows])
    summary = {
        "n": n,
        "seed": seed,
        "prior": PRIOR,
        "text_noise": TEXT_NOISE,
        "image_noise": IMAGE_NOISE,
        "bayes_accuracy": bayes_accuracy(),
    }
    atomic_write_text(out / "bayes.json", json.dumps(summary, indent=2) + "\n")
    return summary
