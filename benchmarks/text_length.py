"""What padding costs the text tower: every batch padded to the data's longest text, against featurize's
way (msc/features/encode.py): batches sorted by length, each padded to its own longest.

    python -m benchmarks.text_length --backbone /tmp/vitb32 --data ../shared/mvsa --posts 1024

(the backbone from ``python -m src.sample --no-data --backbone-shape vit-b-32 --tokenizer ../shared/clip-bpe
--backbone-out /tmp/vitb32``). The same texts, batch size 32, torch fp32 on the CPU; the two ways run
alternately for ``--rounds`` rounds, since a shared machine's speed moves between runs. Prints the token
lengths, the seconds of each way per round, and the largest difference of the pooled features (the
tower is causal and pools at the end-of-text token: padding after a text never changes it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.onnx import posts
from msc.model.backbone import load_backbone


def pooled(backbone, ids: torch.Tensor, mask: torch.Tensor, order: np.ndarray, batch: int, own_length: bool):
    """(N, P) pooled text features, in ``order``'s batches, each cut to its longest text when ``own_length``."""
    out = torch.empty(len(order), backbone.dim)
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            length = int(mask[rows].sum(1).max()) if own_length else ids.shape[1]
            out[rows] = backbone.encode_text(ids[rows, :length], mask[rows, :length]).pooled.float()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--posts", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    backbone = load_backbone(args.backbone, "main", device="cpu", precision="fp32")
    texts, _ = posts(args.data, args.posts)
    encoded = backbone.tokenize(texts, 77)  # padded to the longest: (N, L)
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    lengths = mask.sum(1).numpy()
    print(f"{len(texts)} texts: tokens median {int(np.median(lengths))}, 90th percentile "
          f"{int(np.percentile(lengths, 90))}, longest {ids.shape[1]}")
    by_length = np.argsort(lengths, kind="stable")
    for round_ in range(1, args.rounds + 1):
        seconds = {}
        for name, order, own in (("padded to the data's longest", np.arange(len(texts)), False),
                                 ("length-sorted, each batch to its own longest", by_length, True)):
            started = time.perf_counter()
            features = pooled(backbone, ids, mask, order, args.batch_size, own)
            seconds[name] = (time.perf_counter() - started, features)
        (slow, fixed), (fast, sorted_) = seconds.values()
        print(f"round {round_}: padded to the longest {slow:.1f} s, length-sorted {fast:.1f} s "
              f"({slow / fast:.2f}x); largest pooled difference {float((fixed - sorted_).abs().max()):.1e}")


if __name__ == "__main__":
    main()
