"""Section ``predict``: prediction from raw files on the test samples, through the pyfunc, against
the backbone's raw forward on the same texts and images."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import MAX_TOKENS, forward_throughput
from msc.data.dataset import load_dataset
from msc.data.images import open_image
from msc.data.text import decode_text, normalize_tweet
from msc.model.backbone import load_backbone
from msc.model.heads import build_head
from msc.model.pyfunc import MscModel


def bench_predict(args, work: Path) -> dict:
    dataset = load_dataset(args.data_root)
    backbone = load_backbone(args.backbone)
    frame = pd.DataFrame({"text": [decode_text(s.text_path.read_bytes())[0] for s in dataset.test],
                          "image": [str(s.image_path) for s in dataset.test]})
    texts = [normalize_tweet(t) for t in frame["text"]]
    pixels = torch.from_numpy(np.stack([backbone.preprocess_image(open_image(p)) for p in frame["image"]]))
    forward = forward_throughput(backbone, texts, pixels, MAX_TOKENS)["sample_per_s"]
    model = MscModel()
    model.backbone, model.max_text_tokens, model.trusted_input = backbone, MAX_TOKENS, True  # image paths
    model.temperature = 1.0  # uncalibrated: the speed is the same
    model.head = build_head("cross_attention", backbone.dim, 256, 0.0).eval()
    started = time.perf_counter()
    predictions = model.predict(None, frame)
    predict = len(frame) / (time.perf_counter() - started)
    assert len(predictions) == len(frame)
    return {"samples": len(frame), "forward_per_s": forward, "predict_per_s": predict, "ratio": predict / forward}
