"""Offline sample: a synthetic dataset in the course layout and a random-weight CLIP.

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

import argparse
import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from src import LABELS
from src.backbone import SAMPLE_BACKBONE
from src.errors import UserError, cli
from src.io import atomic_write_text

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


# --- the tiny random-weight CLIP --------------------------------------------------------------

SHAPES = {
    # Tiny: tests and the demo run in seconds. Same 224 px / 32 px patch grid as ViT-B/32.
    # Text is 128 wide: at 64, random-weight pooled text states hid a fifth of the word cues.
    "tiny": dict(text_hidden=128, text_layers=2, text_heads=2, vision_hidden=64, vision_layers=2,
                 vision_heads=2, projection=128),
    # ViT-B/32's shape with random weights: for benchmarks, since speed ignores weight values.
    "vit-b-32": dict(text_hidden=512, text_layers=12, text_heads=8, vision_hidden=768, vision_layers=12,
                     vision_heads=12, projection=512),
}


def build_tokenizer(words: list[str]):
    """A CLIP byte-level BPE tokenizer whose merges spell ``words`` as single tokens."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # the 256 byte symbols
    vocab = {symbol: i for i, symbol in enumerate(alphabet + [s + "</w>" for s in alphabet])}
    merges = []
    for word in sorted(set(w.lower() for w in words)):
        current = word[0]
        for position, char in enumerate(word[1:], start=1):
            following = char + ("</w>" if position == len(word) - 1 else "")
            if current + following not in vocab:
                merges.append((current, following))
                vocab[current + following] = len(vocab)
            current += following
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges)


def load_bpe_tokenizer(folder: Path):
    """CLIP's tokenizer from a folder with its ``vocab.json`` and ``merges.txt`` (data, no weights)."""
    from transformers import CLIPTokenizer

    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    if not vocab_file.is_file() or not merges_file.is_file():
        raise UserError(f"--tokenizer '{folder}' needs vocab.json and merges.txt, CLIP's BPE files (for example "
                        "../shared/clip-bpe, or the two files of openai/clip-vit-base-patch32)")
    lines = merges_file.read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
    return CLIPTokenizer(vocab=json.loads(vocab_file.read_text(encoding="utf-8")), merges=merges)


def write_backbone(out: Path, shape: str, seed: int, tokenizer_folder: Path | None = None) -> None:
    """Save a random-weight CLIP with tokenizer and processor, loadable by from_pretrained.

    The tokenizer is the sample's small vocabulary, or CLIP's real BPE from ``tokenizer_folder``,
    so that a benchmark backbone splits real tweets into as many tokens as the real CLIP does.
    """
    import torch
    import transformers
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    transformers.utils.logging.disable_progress_bar()
    if tokenizer_folder is None:
        words = [w for ws in CUE_WORDS.values() for w in ws] + FILLER_WORDS + ["user", "http", "rt"]
        tokenizer = build_tokenizer(words)
    else:
        tokenizer = load_bpe_tokenizer(tokenizer_folder)
    dims = SHAPES[shape]
    special = {
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|startoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    }
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=dims["text_hidden"], intermediate_size=4 * dims["text_hidden"],
            num_hidden_layers=dims["text_layers"], num_attention_heads=dims["text_heads"],
            max_position_embeddings=77, **special,
        ),
        vision_config=dict(
            hidden_size=dims["vision_hidden"], intermediate_size=4 * dims["vision_hidden"],
            num_hidden_layers=dims["vision_layers"], num_attention_heads=dims["vision_heads"],
            image_size=224, patch_size=32,
        ),
        projection_dim=dims["projection"],
        msc_random_weights=True,  # read by describe_backbone: reports made with it say so
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data"), help="dataset folder (default: data)")
    parser.add_argument("--n", type=int, default=800, help="number of samples, labelled and test (default: 800)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone-out", type=Path, default=Path(SAMPLE_BACKBONE))
    parser.add_argument("--backbone-shape", choices=sorted(SHAPES), default="tiny",
                        help="tiny (default) or vit-b-32, ViT-B/32's shape for benchmarks")
    parser.add_argument("--no-data", action="store_true", help="write only the backbone")
    parser.add_argument("--tokenizer", type=Path, help="a folder with CLIP's BPE vocab.json and merges.txt (such as "
                        "../shared/clip-bpe): the backbone tokenizes as the real CLIP does (default: the sample's "
                        "small vocabulary)")
    args = parser.parse_args(argv)
    if not args.no_data:
        summary = write_dataset(args.out, args.n, args.seed)
        accuracy = summary["bayes_accuracy"]
        print(f"wrote {args.n} samples to {args.out}/ (Bayes-optimal accuracy: text {accuracy['text']:.4f}, "
              f"image {accuracy['image']:.4f}, both {accuracy['both']:.4f}; see {args.out}/bayes.json)")
    write_backbone(args.backbone_out, args.backbone_shape, args.seed, args.tokenizer)
    vocabulary = f"CLIP's BPE from {args.tokenizer}" if args.tokenizer else "the sample's vocabulary"
    print(f"wrote a random-weight {args.backbone_shape} CLIP with {vocabulary} to {args.backbone_out}/")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
