"""Label a table of posts with an exported msc model: ``python predict.py --input TABLE --out FILE``.

This file is copied into every bundle that ``python -m src.export`` writes, as ``predict.py``, and
runs there with onnxruntime, numpy, pillow and tokenizers alone (no torch, no msc). The table has the
columns of ``src.predict --input``: ``id``, ``text`` (or ``text_path``) and ``image_path``, paths
relative to the table's folder; .csv or .jsonl (.parquet with pyarrow installed). The output is CSV:
``id,label,p_<label>...``, one row per post in table order, the probabilities calibrated as the
registered model's (``model.json``).

It does what msc's pyfunc does, step for step: the tweet normalisation (NLTK's TweetTokenizer, whose
expressions tweet_tokens.py holds; URLs become ``http``, @mentions ``@user``), the tokenizer, the
image decoding (EXIF rotation, the centre crop to at most 4:1, 16-bit images scaled to 8 bits,
transparency onto white), the processor's
resize, crop, rescale and normalisation (``preprocess.json``), the towers, the features rounded to
float16 as msc's cache stores them, the head and head.json's probability rules (calibrated.py: the
calibration map and the label rule; the temperature alone for a model registered before them). A post
whose image is missing or
unreadable is predicted from its text, its image features zeros, as msc does.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image, ImageOps
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
# tweet_tokens.py lies beside this file, in the bundle as in msc/model/: loaded by path, not by a package.
_spec = importlib.util.spec_from_file_location("tweet_tokens", HERE / "tweet_tokens.py")
_tweets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tweets)
tweet_tokens = _tweets.tweet_tokens
# calibrated.py likewise: msc's own probability rules (msc/model/calibrated.py), numpy only.
_spec = importlib.util.spec_from_file_location("bundle_calibrated", HERE / "calibrated.py")
_rules = sys.modules["bundle_calibrated"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up there
_spec.loader.exec_module(_rules)

WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0}


def normalize(text: str, chars: int) -> str:
    """msc.data.text.normalize_tweet: the first ``chars`` characters as NLTK's TweetTokenizer splits them
    (tweet_tokens.py), joined by spaces, URLs as ``http`` and @mentions as ``@user``."""
    words = tweet_tokens(text[:chars])
    return " ".join("http" if re.match(r"^(https?://|www\.)", w, re.I) else "@user" if w.startswith("@") and len(w) > 1
                    else w for w in words)


def open_image(path: Path, rule: dict) -> Image.Image:
    """msc.data.images.open_image: upright RGB of at most ``max_aspect``:1, 16-bit scaled to 8 bits."""
    image = Image.open(path)
    image.draft("RGB", tuple(rule["draft"]))
    image = ImageOps.exif_transpose(image)
    width, height = image.size
    limit = rule["max_aspect"] * min(width, height)
    if max(width, height) > limit:
        keep_w, keep_h = min(width, limit), min(height, limit)
        left, top = (width - keep_w) // 2, (height - keep_h) // 2
        image = image.crop((left, top, left + keep_w, top + keep_h))
    if image.mode in WIDE_MODES:
        values = np.asarray(image, dtype=np.float64) * (255.0 / WIDE_MODES[image.mode])
        image = Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image.convert("RGBA"))
    return image.convert("RGB")


def pixels(image: Image.Image, rule: dict) -> np.ndarray:
    """The processor's resize (bicubic), centre crop, rescale and normalisation: (3, H, W) float32."""
    width, height = image.size
    if rule["resize"] == "shortest_edge":  # the shorter side to ``size``, the longer in proportion, truncated
        side = rule["size"]
        size = (side, int(side * height / width)) if width <= height else (int(side * width / height), side)
    else:
        size = (rule["width"], rule["height"])
    array = np.asarray(image.resize(size, resample=rule["resample"]))  # (H, W, 3) uint8
    if rule.get("crop"):
        crop_h, crop_w = rule["crop"]
        top, left = (array.shape[0] - crop_h) // 2, (array.shape[1] - crop_w) // 2
        array = array[top : top + crop_h, left : left + crop_w]
    scaled = (array.astype(np.float64) * rule["rescale"]).astype(np.float32)
    mean, std = np.asarray(rule["mean"], np.float32), np.asarray(rule["std"], np.float32)
    return ((scaled - mean) / std).transpose(2, 0, 1).astype(np.float32)


def run(session: onnxruntime.InferenceSession, values: dict) -> list[np.ndarray]:
    """The graph on the inputs it has (the exporter drops inputs a graph never reads)."""
    return session.run(None, {i.name: values[i.name] for i in session.get_inputs()})


class Bundle:
    def __init__(self, folder: Path, threads: int | None):
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        load = lambda name: onnxruntime.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])  # noqa: E731
        self.text, self.image, self.head = load("text_tower.onnx"), load("image_tower.onnx"), load("head.onnx")
        self.model = json.loads((folder / "model.json").read_text())
        self.rule = json.loads((folder / "preprocess.json").read_text())
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        text = self.rule["text"]
        self.tokenizer.enable_truncation(text["max_length"])
        length = text["max_length"] if text["padding"] == "max_length" else None
        self.tokenizer.enable_padding(pad_id=text["pad_id"], length=length)

    def towers(self, ids: np.ndarray, mask: np.ndarray, pixels: np.ndarray) -> list[np.ndarray]:
        """Text pooled (B, P) and tokens (B, L, P), image pooled (B, P) and tokens (B, M, P). Towers quantized
        to int8 (model.json's ``quantized``) run one post at a time, a text padded to each batch's longest at
        its own length, its padding zeros, as msc does: they scale each call's activations by its largest."""
        if not self.model.get("quantized"):
            return run(self.text, {"input_ids": ids, "attention_mask": mask}) + run(self.image, {"pixel_values": pixels})
        texts, images = [], []
        for row_ids, row_mask, row_pixels in zip(ids, mask, pixels):
            length = int(row_mask.sum()) if self.rule["text"]["padding"] == "longest" else len(row_ids)
            pooled, tokens = run(self.text, {"input_ids": row_ids[None, :length], "attention_mask": row_mask[None, :length]})
            texts.append((pooled, np.pad(tokens, ((0, 0), (0, len(row_ids) - length), (0, 0)))))
            images.append(run(self.image, {"pixel_values": row_pixels[None]}))
        return [np.concatenate(parts) for parts in (*zip(*texts), *zip(*images))]

    def probabilities(self, texts: list[str], images: list[np.ndarray | None]) -> np.ndarray:
        """(B, C) raw probabilities of a batch (the head's softmax); a None image is a missing one."""
        encoded = self.tokenizer.encode_batch([normalize(t, self.rule["text"]["chars"]) for t in texts])
        ids = np.asarray([e.ids for e in encoded], np.int64)  # (B, L)
        mask = np.asarray([e.attention_mask for e in encoded], np.int64)
        side = self.rule["image"]["input"]
        stacked = np.stack([np.zeros((3, side, side), np.float32) if i is None else i for i in images])
        cache = lambda x: x.astype(np.float16).astype(np.float32)  # noqa: E731 - the feature cache's precision
        text_pooled, text_tokens, image_pooled, image_tokens = map(cache, self.towers(ids, mask, stacked))
        missing = np.asarray([i is None for i in images])
        image_pooled[missing], image_tokens[missing] = 0.0, 0.0
        logits = run(self.head, {"text_pooled": text_pooled, "image_pooled": image_pooled, "text_tokens": text_tokens,
                                 "text_mask": mask.astype(bool), "image_tokens": image_tokens})[0]
        return _rules.softmax(logits.astype(np.float64))  # (B, C) raw; ``rules`` calibrates them


def read_table(path: Path) -> list[dict]:
    if not path.is_file():
        raise SystemExit(f"error: --input {path}: no such file; give the path of an existing table of posts")
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return list(csv.DictReader(handle))
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".parquet":
        import pyarrow.parquet

        return pyarrow.parquet.read_table(path).to_pylist()
    raise SystemExit(f"error: --input {path} is not .csv, .jsonl or .parquet; save the table as one of those")


def post(row: dict, folder: Path, rule: dict, number: int) -> tuple[str, str, np.ndarray | None]:
    """(id, text, pixels or None) of one row; an image that is absent or unreadable is None, said on stderr."""
    if "id" not in row:
        raise SystemExit(f"error: row {number} of the table has no id column; add one")
    text = row.get("text")
    if text is None and row.get("text_path"):
        text = (folder / row["text_path"]).read_text(encoding="utf-8", errors="replace")
    image = None
    if row.get("image_path"):
        try:
            image = pixels(open_image(folder / row["image_path"], rule["image"]), rule["image"])
        except (OSError, ValueError, SyntaxError) as error:
            print(f"warning: post {row['id']}: image unusable ({error}); predicted from its text", file=sys.stderr)
    return str(row["id"]), text or "", image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Label a table of posts with this exported msc model.")
    parser.add_argument("--input", type=Path, required=True, help="a .csv, .jsonl or .parquet table: id, text, image_path")
    parser.add_argument("--out", type=Path, required=True, help="where to write id,label,p_<label>... as CSV")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, help="onnxruntime's threads per graph (default: every core)")
    args = parser.parse_args(argv)
    rows = read_table(args.input)  # before the bundle loads: a wrong path is said at once
    bundle = Bundle(HERE, args.threads)
    labels = bundle.model["labels"]
    head = bundle.model["head"]
    rules = _rules.ProbabilityRules.from_dict(head.get("probability_rules") or {}, bundle.model["temperature"])
    lines = [["id", "label", *(f"p_{label}" for label in labels)]]
    for start in range(0, len(rows), args.batch_size):
        posts = [post(row, args.input.parent, bundle.rule, start + i + 1)
                 for i, row in enumerate(rows[start : start + args.batch_size])]
        probabilities, decided, _ = rules.predict(bundle.probabilities([p[1] for p in posts], [p[2] for p in posts]))
        for (guid, _, _), label, p in zip(posts, decided, probabilities):
            lines.append([guid, labels[int(label)], *(f"{v:.6f}" for v in p)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    staging = args.out.with_name(f".{args.out.name}.tmp")
    with staging.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(lines)
    staging.replace(args.out)  # a reader sees the old file or the whole new one
    print(f"wrote {len(rows)} labels to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
