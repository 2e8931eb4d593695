"""What several benchmark sections share: running a stage command, a params file and a data
folder for it, and the backbone's raw forward throughput that the sections are compared with."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.model_selection import train_test_split

from benchmarks.processes import REPO, tree_memory
from msc.core.errors import UserError
from msc.core.yamlfile import load_yaml
from msc.data.dataset import TEST_FILE, TRAIN_FILE, read_label_file
from msc.data.images import open_image
from msc.data.text import decode_text, normalize_tweet
from msc.model.pyfunc import PREDICT_BATCH

FORWARD_BATCHES = 8  # batches of each modality timed for the raw-forward reference
MAX_TOKENS = 77  # text tokens the benchmark's backbone reads (CLIP's context)


def run_module(module: str, args: list[str], cwd: Path, sample_memory: bool = False,
               env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Run ``python -m module args`` in ``cwd`` (with ``env`` added to the environment): (wall seconds, peak
    tree PSS bytes or 0, output)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    env.pop("MLFLOW_TRACKING_URI", None)  # the study gets its own store under cwd
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = [0]
    if sample_memory:
        def sample() -> None:
            while process.poll() is None:
                peak[0] = max(peak[0], tree_memory(process.pid))
                time.sleep(0.2)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    output, _ = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise UserError(f"`python -m {module} {' '.join(args)}` failed in {cwd}:\n{output[-2000:]}")
    return wall, peak[0], output


def write_params(path: Path, data_root: Path, backbone: str, features_dir: Path, **sections) -> Path:
    """A params.yaml: the repository's, pointed at the benchmark's data, backbone and cache."""
    params = load_yaml((REPO / "params.yaml").read_text(), str(REPO / "params.yaml"))
    params["data"]["root"] = str(data_root)
    params["model"]["backbone"] = backbone
    params["features"].update(dir=str(features_dir), augment_views=0)
    for section, values in sections.items():
        params[section].update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def dataset_view(source: Path, target: Path, labelled_fraction: float = 1.0, add_unlisted: bool = False,
                 with_test: bool = True) -> Path:
    """A data folder that links ``source``'s files: a stratified share of train.txt, and the test
    file (``with_test``; else a test file with no rows), plus (``add_unlisted``) every guid no label
    file lists, as unlabelled test rows."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    (target / "data").symlink_to((source / "data").resolve())
    train = read_label_file(source / TRAIN_FILE, test=False)
    test = read_label_file(source / TEST_FILE, test=True)
    keep = np.arange(len(train))
    if labelled_fraction < 1.0:
        keep, _ = train_test_split(keep, train_size=labelled_fraction, stratify=[label for _, label, _ in train],
                                   random_state=0)
        keep = np.sort(keep)
    test_guids = [guid for guid, _, _ in test] if with_test else []
    if add_unlisted:
        listed = {guid for guid, _, _ in train} | set(test_guids)
        test_guids += sorted({p.stem for p in (source / "data").glob("*.txt")} - listed, key=lambda g: (len(g), g))
    (target / TRAIN_FILE).write_text("guid,tag\n" + "".join(f"{train[i][0]},{train[i][1]}\n" for i in keep))
    (target / TEST_FILE).write_text("guid,tag\n" + "".join(f"{guid},null\n" for guid in test_guids))
    return target


def forward_throughput(backbone, texts: list[str], pixels: torch.Tensor, max_tokens: int) -> dict[str, float]:
    """Samples/s of the text and the image forward alone, and of both together (1 / sum of times)."""
    def timed(step, n: int) -> float:
        step(PREDICT_BATCH)  # warm-up: one batch
        started = time.perf_counter()
        step(n)
        return time.perf_counter() - started

    def text_step(limit: int) -> None:
        for start in range(0, limit, PREDICT_BATCH):
            encoded = backbone.tokenize(texts[start : start + PREDICT_BATCH], max_tokens)
            backbone.encode_text(encoded["input_ids"], encoded["attention_mask"])

    def image_step(limit: int) -> None:
        for start in range(0, limit, PREDICT_BATCH):
            backbone.encode_image(pixels[start : start + PREDICT_BATCH])

    with torch.inference_mode():
        text_seconds, image_seconds = timed(text_step, len(texts)), timed(image_step, len(pixels))
    return {"text_per_s": len(texts) / text_seconds, "image_per_s": len(pixels) / image_seconds,
            "sample_per_s": 1 / (text_seconds / len(texts) + image_seconds / len(pixels))}


def forward_inputs(backbone, dataset, max_tokens: int) -> tuple[list[str], torch.Tensor]:
    """FORWARD_BATCHES text batches spread over featurize's length order, and as many images."""
    texts = [normalize_tweet(decode_text(s.text_path.read_bytes())[0]) for s in dataset.samples]
    lengths = backbone.tokenize(texts, max_tokens)["attention_mask"].sum(1).numpy()
    order = np.argsort(lengths, kind="stable")
    batch_starts = np.linspace(0, len(order) - PREDICT_BATCH, FORWARD_BATCHES).astype(int)
    chosen = [texts[i] for start in batch_starts for i in order[start : start + PREDICT_BATCH]]
    images = dataset.samples[: FORWARD_BATCHES * PREDICT_BATCH]
    pixels = torch.from_numpy(np.stack([backbone.preprocess_image(open_image(s.image_path)) for s in images]))
    return chosen, pixels
