"""The offline sample: a synthetic dataset with any set of labels and a known Bayes ceiling.

The data has a known generative story, so the best possible accuracy is computable exactly:

* the label y follows a prior over the K labels: the real MVSA-Single class prior for the course's
  three labels, else a geometric one (``label_prior``) so that class weights matter;
* the text carries a cue class t and the image a cue class v, each equal to y with probability
  ``1 - noise`` and otherwise one of the K - 1 other labels, uniformly; t and v are independent
  given y, so some samples have conflicting modalities;
* the Bayes-optimal rule predicts argmax_y P(y) P(t|y) P(v|y), and its expected accuracy with
  text alone, image alone and both is a finite sum, printed and stored in ``bayes.json`` with the
  prior (whose keys are the labels, in label order) and the two noises.

Two layouts: the course's (``train.txt``, ``test_without_label.txt``, ``data/{guid}.txt|jpg``) or a
table (``posts.csv``: ``id,text,image_path,label``, images in ``images/``, label empty on test posts).
``cues.csv`` beside either keeps (guid, label, text_cue, image_cue), guid being the table's id, so
the Bayes rule's accuracy on any subset, such as the holdout split, can be computed too.
"""

from __future__ import annotations

import colorsys
import csv
import json
import random
import shutil
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageDraw

from msc.core.errors import UserError
from msc.core.files import atomic_write_text
from msc.core.labels import COURSE_LABELS, check_label_set
from msc.core.owned import SAMPLE_MARK, mark

# Class prior of the real train.txt: 2388 positive, 419 neutral, 1193 negative of 4000.
PRIOR = {"positive": 2388 / 4000, "neutral": 419 / 4000, "negative": 1193 / 4000}
# Any other label set: the first label most frequent, each next one GEOMETRIC_RATIO times as frequent
# (two labels 0.57/0.43; five 0.33, 0.25, 0.18, 0.14, 0.10).
GEOMETRIC_RATIO = 0.75
TEXT_NOISE = 0.25  # P(text cue != label): text alone reaches 0.75 at best
IMAGE_NOISE = 0.25  # P(image cue != label): image alone 0.75, both 0.84 with the course's prior
TEST_FRACTION = 511 / 4511  # the real test share
FORMATS = ("mvsa", "table")

CUE_WORDS = {
    "positive": ["happy", "love", "great", "awesome", "beautiful", "wonderful", "blessed"],
    "neutral": ["meeting", "report", "schedule", "update", "notice", "listing", "agenda"],
    "negative": ["sad", "hate", "awful", "terrible", "angry", "broken", "disaster"],
}
FILLER_WORDS = ["the", "a", "my", "this", "our", "day", "city", "news", "photo", "team", "now", "so"]
EXTRAS = ["#tbt", "#photo", "😀", "🙏", "http://t.co/x1", "@friend", "RT", "!!", "…"]
# Image cue: the background colour family of each class (RGB), varied in brightness and noise.
CUE_COLOURS = {"positive": (235, 170, 40), "neutral": (128, 128, 128), "negative": (40, 60, 150)}
# Other label sets take their cue words from the same words (the tiny backbone's vocabulary has them):
# up to 7 per label, 3 at least (a text has 3 cue words), MIN_FILLERS left over as fillers.
WORDS_PER_TEXT, MAX_WORDS_PER_LABEL, MIN_FILLERS = 3, 7, 3
MAX_LABELS = (sum(map(len, CUE_WORDS.values())) + len(FILLER_WORDS) - MIN_FILLERS) // WORDS_PER_TEXT


def parse_labels(text: str) -> tuple[str, ...]:
    """The label names of ``--labels a,b,...``, checked: at least two, distinct, non-empty, not null."""
    labels = check_label_set(tuple(name.strip() for name in text.split(",")), f"--labels '{text}'")
    if len(labels) > MAX_LABELS:
        raise UserError(f"--labels names {len(labels)} labels, and the sample's vocabulary has cue words for at most "
                        f"{MAX_LABELS}; name fewer labels")
    return labels


def label_prior(labels: Sequence[str]) -> dict[str, float]:
    """P(label): the course's real prior for its three labels in their order, else geometric."""
    if tuple(labels) == tuple(PRIOR):
        return dict(PRIOR)
    weights = [GEOMETRIC_RATIO**k for k in range(len(labels))]
    return {label: w / sum(weights) for label, w in zip(labels, weights)}


def cue_words(labels: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Each label's cue words and the filler words: the sample's words in order, cut into equal runs.

    Any three labels get exactly the course's groups and fillers; more labels get fewer words each."""
    words = [w for ws in CUE_WORDS.values() for w in ws] + FILLER_WORDS
    per_label = min(MAX_WORDS_PER_LABEL, (len(words) - MIN_FILLERS) // len(labels))
    if per_label < WORDS_PER_TEXT:
        raise UserError(f"the sample has cue words for at most {MAX_LABELS} labels, not {len(labels)}")
    groups = {label: words[k * per_label : (k + 1) * per_label] for k, label in enumerate(labels)}
    return groups, words[len(labels) * per_label :]


def cue_colours(labels: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """Each label's background colour: the course's for its labels, else hues spread round the wheel."""
    if tuple(labels) == tuple(CUE_COLOURS):
        return dict(CUE_COLOURS)
    return {label: tuple(round(255 * c) for c in colorsys.hsv_to_rgb(k / len(labels), 0.75, 0.8))
            for k, label in enumerate(labels)}


def cue_likelihood(cue: str, label: str, noise: float, k: int) -> float:
    """P(cue | label) under the symmetric noise model over ``k`` labels."""
    return 1 - noise if cue == label else noise / (k - 1)


def bayes_predict(text_cue: str | None, image_cue: str | None, prior: Mapping[str, float],
                  text_noise: float = TEXT_NOISE, image_noise: float = IMAGE_NOISE) -> str:
    """The Bayes-optimal label given the cues that are observed (None = modality unseen).

    ``prior`` maps each label, in label order, to its probability; ties go to the earlier label."""
    k = len(prior)

    def score(label: str) -> float:
        p = prior[label]
        if text_cue is not None:
            p *= cue_likelihood(text_cue, label, text_noise, k)
        if image_cue is not None:
            p *= cue_likelihood(image_cue, label, image_noise, k)
        return p

    return max(prior, key=score)


def bayes_accuracy(prior: Mapping[str, float], text_noise: float = TEXT_NOISE,
                   image_noise: float = IMAGE_NOISE) -> dict[str, float]:
    """Expected accuracy of the Bayes rule with text only, image only and both.

    Exact: the sum over every observable cue combination of max_y P(y, cues).
    """
    k = len(prior)

    def accuracy(use_text: bool, use_image: bool) -> float:
        total = 0.0
        for t in prior if use_text else [None]:
            for v in prior if use_image else [None]:
                guess = bayes_predict(t, v, prior, text_noise, image_noise)
                p = prior[guess]
                if t is not None:
                    p *= cue_likelihood(t, guess, text_noise, k)
                if v is not None:
                    p *= cue_likelihood(v, guess, image_noise, k)
                total += p
        return total

    return {"text": accuracy(True, False), "image": accuracy(False, True), "both": accuracy(True, True)}


def stored_story(folder: Path) -> dict:
    """The prior and noises that ``folder/bayes.json`` records: keyword arguments of ``bayes_predict``
    and ``bayes_accuracy`` (the prior's keys are the sample's labels, in label order)."""
    summary = json.loads((folder / "bayes.json").read_text())
    return {"prior": summary["prior"], "text_noise": summary["text_noise"], "image_noise": summary["image_noise"]}


def noisy_cue(label: str, noise: float, rng: random.Random, labels: Sequence[str]) -> str:
    """``label`` with probability ``1 - noise``, else one of the other ``labels`` uniformly."""
    if rng.random() >= noise:
        return label
    return rng.choice([other for other in labels if other != label])


def make_text(words: list[str], fillers: list[str], rng: random.Random) -> str:
    # Three cue words against two distractors: a random-weight text encoder pools all tokens
    # into one vector, and the cue must survive that for the Bayes ceiling to be reachable.
    chosen = rng.sample(words, WORDS_PER_TEXT) + rng.sample(fillers, 1) + rng.sample(EXTRAS, 1)
    rng.shuffle(chosen)
    return " ".join(chosen)


def make_image(colour: tuple[int, int, int], rng: random.Random, scale: float = 1.0) -> Image.Image:
    """A background in the cue's colour family, pixel noise and an uninformative shape, 160-320 px a side
    times ``scale``. ``rng`` draws the same numbers at any scale (the noise has its own generator), so the
    rest of the story does not depend on it."""
    width, height = rng.randint(160, 320), rng.randint(160, 320)
    brightness = rng.uniform(0.75, 1.25)
    colour = np.clip(np.array(colour) * brightness, 0, 255)
    np_rng = np.random.default_rng(rng.getrandbits(32))
    pixels = colour + np_rng.normal(0, 20, size=(max(1, round(height * scale)), max(1, round(width * scale)), 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    box = sorted(rng.sample(range(width), 2)), sorted(rng.sample(range(height), 2))
    ImageDraw.Draw(image).ellipse(
        tuple(scale * value for value in (box[0][0], box[1][0], box[0][1], box[1][1])),
        fill=tuple(rng.randint(0, 255) for _ in range(3)),
    )
    return image


class Post(NamedTuple):
    guid: str
    label: str
    text_cue: str
    image_cue: str
    text: str
    decorated: bool  # curly quotes and a price: GB18030-encoded in the course layout
    image: Image.Image


def draw_posts(n: int, seed: int, prior: Mapping[str, float], text_noise: float, image_noise: float,
               image_scale: float = 1.0) -> Iterator[Post]:
    """The ``n`` posts of the generative story, one at a time (their images are large)."""
    rng = random.Random(seed)
    labels = list(prior)
    words, fillers = cue_words(labels)
    colours = cue_colours(labels)
    for index in range(n):
        label = rng.choices(labels, weights=[prior[c] for c in labels])[0]
        text_cue, image_cue = noisy_cue(label, text_noise, rng, labels), noisy_cue(label, image_noise, rng, labels)
        text = make_text(words[text_cue], fillers, rng)
        # About a quarter of the real texts are GB18030; mirror that with curly quotes and €.
        decorated = rng.random() < 0.25
        if decorated:
            text = f"“{text}” €{rng.randint(1, 99)}"
        image = make_image(colours[image_cue], rng, image_scale)
        yield Post(str(index + 1), label, text_cue, image_cue, text, decorated, image)


def write_course_layout(out: Path, posts: Iterator[Post], n_labelled: int) -> None:
    """``train.txt``, ``test_without_label.txt`` and ``data/{guid}.txt|jpg``: the course archive's layout."""
    folder = out / "data"
    folder.mkdir(parents=True)
    tags = []
    for post in posts:
        (folder / f"{post.guid}.txt").write_bytes(post.text.encode("gb18030") if post.decorated else post.text.encode())
        post.image.save(folder / f"{post.guid}.jpg", quality=90)
        tags.append((post.guid, post.label))
    labelled, test = tags[:n_labelled], tags[n_labelled:]
    (out / "train.txt").write_text("guid,tag\n" + "".join(f"{g},{y}\n" for g, y in labelled))
    (out / "test_without_label.txt").write_text("guid,tag\n" + "".join(f"{g},null\n" for g, _ in test))


def write_table(out: Path, posts: Iterator[Post], n_labelled: int) -> None:
    """``posts.csv`` (UTF-8: id, text, image_path relative to it, label empty to predict) and ``images/``."""
    (out / "images").mkdir(parents=True)
    with (out / "posts.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("id", "text", "image_path", "label"))
        for index, post in enumerate(posts):
            post.image.save(out / "images" / f"{post.guid}.jpg", quality=90)
            label = post.label if index < n_labelled else ""
            writer.writerow((post.guid, post.text, f"images/{post.guid}.jpg", label))


def write_dataset(out: Path, n: int, seed: int, labels: Sequence[str] = COURSE_LABELS, layout: str = "mvsa",
                  text_noise: float = TEXT_NOISE, image_noise: float = IMAGE_NOISE,
                  test_fraction: float = TEST_FRACTION, image_scale: float = 1.0) -> dict:
    """Write ``n`` samples of ``labels`` to ``out`` in ``layout`` (mvsa: the course's; table: ``posts.csv``),
    with the cues' noises and the unlabelled share given (the sample's by default); returns the Bayes
    summary, also written to ``bayes.json``. ``image_scale`` shrinks the images and nothing else (the
    tests' data: 0.25, for the tests' 32 px backbone)."""
    if n < 60:
        raise UserError(f"--n {n} is too small for stratified train/validation/holdout splits; use at least 60")
    if layout not in FORMATS:
        raise UserError(f"--format {layout} is not one of {', '.join(FORMATS)}")
    prior = label_prior(labels)
    cue_words(labels)  # refuses more labels than the words allow, before anything is deleted
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    mark(out, SAMPLE_MARK, "sample")  # first, so a folder left half-written by a killed run is still ours
    n_labelled = n - max(1, round(n * test_fraction))
    cues = []

    def keeping_cues(posts: Iterator[Post]) -> Iterator[Post]:
        for post in posts:
            cues.append((post.guid, post.label, post.text_cue, post.image_cue))
            yield post

    write = write_course_layout if layout == "mvsa" else write_table
    write(out, keeping_cues(draw_posts(n, seed, prior, text_noise, image_noise, image_scale)), n_labelled)
    with (out / "cues.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("guid", "label", "text_cue", "image_cue"), *cues])
    summary = {
        "n": n,
        "seed": seed,
        "prior": prior,
        "text_noise": text_noise,
        "image_noise": image_noise,
        "bayes_accuracy": bayes_accuracy(prior, text_noise, image_noise),
    }
    atomic_write_text(out / "bayes.json", json.dumps(summary, indent=2) + "\n")
    return summary
