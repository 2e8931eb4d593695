"""Section ``predict``: prediction from raw files on the test samples, through the pyfunc, against
the backbone's raw forward on the same texts and images; and the same prediction with ``explain``
(the head runs four times, the backbone once), against it without."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import MAX_TOKENS, forward_throughput
from msc.core.labels import COURSE_LABELS
from msc.data.dataset import load_dataset
from msc.data.images import open_image
from msc.data.posts import DataSource
from msc.data.text import decode_text, normalize_tweet
from msc.model.backbone import load_backbone
from msc.model.heads import build_head
from msc.model.pyfunc import MscModel


def bench_predict(args, work: Path) -> dict:
    dataset = load_dataset(DataSource(args.data_root))
    backbone = load_backbone(args.backbone)
    frame = pd.DataFrame({"text": [decode_text(s.text_path.read_bytes())[0] for s in dataset.test],
                          "image": [str(s.image_path) for s in dataset.test]})
    texts = [normalize_tweet(t) for t in frame["text"]]
    pixels = torch.from_numpy(np.stack([backbone.preprocess_image(open_image(p)) for p in frame["image"]]))
    forward = forward_throughput(backbone, texts, pixels, MAX_TOKENS)["sample_per_s"]
    model = MscModel()
    model.backbone, model.max_text_tokens, model.trusted_input = backbone, MAX_TOKENS, True  # image paths
    model.labels = COURSE_LABELS
    model.head = build_head("cross_attention", backbone.dim, 256, 0.0, len(COURSE_LABELS)).eval()
    rates = {}
    for name, params in (("plain", None), ("explain", {"explain": True}), ("plain again", None)):
        started = time.perf_counter()
        predictions = model.predict(None, frame, params)
        rates[name] = len(frame) / (time.perf_counter() - started)
        assert len(predictions) == len(frame)
        print(f"predict ({name}): {rates[name]:.2f} samples/s")
    predict = rates["plain"]
    # The explain cost against the mean of the runs before and after it (the machine drifts).
    plain = (rates["plain"] + rates["plain again"]) / 2
    return {"samples": len(frame), "forward_per_s": forward, "predict_per_s": predict, "ratio": predict / forward,
            "predict_again_per_s": rates["plain again"], "explain_per_s": rates["explain"],
            "explain_cost": plain / rates["explain"] - 1}
