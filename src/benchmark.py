"""Benchmark: prediction from raw files against the backbone's own forward throughput.

    python -m src.benchmark --data-root ../shared/mvsa --backbone models/vit-b-32-random

Both sides see the same test samples in the same batches. "Forward" times only the backbone on
inputs that are already tokenized and preprocessed; "predict" times the registered model's
whole path (read the files, decode, preprocess, backbone, head). The ratio predict / forward is
the share of the backbone's speed that prediction keeps.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from src.backbone import load_backbone
from src.data import decode_text, load_dataset, normalize_tweet
from src.errors import cli
from src.heads import build_head
from src.images import open_image
from src.serving import PREDICT_BATCH, MscModel


def forward_throughput(backbone, texts: list[str], pixels: torch.Tensor, max_tokens: int) -> float:
    """Samples/s of text + image forward passes alone, in PREDICT_BATCH batches."""
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(texts), PREDICT_BATCH):
            encoded = backbone.tokenize(texts[start : start + PREDICT_BATCH], max_tokens)
            backbone.encode_text(encoded["input_ids"], encoded["attention_mask"])
            backbone.encode_image(pixels[start : start + PREDICT_BATCH])
    return len(texts) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prediction throughput against raw backbone forward.")
    parser.add_argument("--data-root", default="../shared/mvsa")
    parser.add_argument("--backbone", default="models/vit-b-32-random")
    parser.add_argument("--max-text-tokens", type=int, default=77)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    dataset = load_dataset(args.data_root)
    backbone = load_backbone(args.backbone)
    frame = pd.DataFrame({"text": [decode_text(s.text_path.read_bytes())[0] for s in dataset.test],
                          "image": [str(s.image_path) for s in dataset.test]})
    # Forward side: inputs prepared up front, outside the timer.
    texts = [normalize_tweet(t) for t in frame["text"]]
    pixels = torch.from_numpy(np.stack([backbone.preprocess_image(open_image(p)) for p in frame["image"]]))
    forward_throughput(backbone, texts[:PREDICT_BATCH], pixels[:PREDICT_BATCH], args.max_text_tokens)  # warm-up
    forward = forward_throughput(backbone, texts, pixels, args.max_text_tokens)
    model = MscModel()
    model.backbone, model.max_text_tokens = backbone, args.max_text_tokens
    model.head = build_head("cross_attention", backbone.dim, 256, 0.0).eval()
    started = time.perf_counter()
    predictions = model.predict(None, frame)
    predict = len(frame) / (time.perf_counter() - started)
    assert len(predictions) == len(frame)
    print(f"device {backbone.device}, dtype {backbone.dtype}, torch threads {torch.get_num_threads()}, "
          f"{len(frame)} test samples, batch {PREDICT_BATCH}")
    print(f"backbone forward: {forward:.1f} samples/s; predict from raw files: {predict:.1f} samples/s; "
          f"ratio {predict / forward:.2f}")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
