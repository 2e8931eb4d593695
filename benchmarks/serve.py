"""Section ``serve``: ``mlflow models serve`` on loopback with 1 and 2 ``--workers``; 1, 4 and 16
concurrent clients each send requests of ``SERVE_ROWS`` real test samples (base64 images) for
``--serve-seconds``: throughput, p50/p99 latency and errors, against the raw forward.

The served model is the backbone with an untrained ``late`` head (speed does not depend on the
weights), logged into a store under the work dir. The clients run on the same cores as the server.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.common import MAX_TOKENS, forward_inputs, forward_throughput
from benchmarks.processes import free_port, serve_model, tree_memory
from msc.config import TrainConfig
from msc.core.labels import COURSE_LABELS
from msc.data.dataset import load_dataset
from msc.data.posts import Dataset, DataSource
from msc.data.text import decode_text
from msc.model.backbone import load_backbone
from msc.model.heads import build_head

SERVE_CLIENTS = (1, 4, 16)
SERVE_WORKERS = (1, 2)
SERVE_ROWS = 16  # rows per request


def log_served_model(store: Path, backbone: str) -> str:
    """An untrained ``late`` head over ``backbone``, logged into the MLflow store at ``store``."""
    import mlflow

    from msc.track.logged_model import log_trial_model

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    experiment = mlflow.set_experiment("serve-benchmark")
    dim = load_backbone(backbone, device="cpu").dim
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        info = log_trial_model(build_head("late", dim, 256, 0.0, len(COURSE_LABELS)).eval(), TrainConfig(), dim, backbone,
                               "main", MAX_TOKENS, COURSE_LABELS)
    return info.model_uri


def request_bodies(dataset: Dataset) -> list[bytes]:
    """Four JSON request bodies of ``SERVE_ROWS`` test samples each: raw text, base64 image bytes."""
    samples = dataset.test[: 4 * SERVE_ROWS]
    rows = [[decode_text(s.text_path.read_bytes())[0], base64.b64encode(s.image_path.read_bytes()).decode()]
            for s in samples]
    return [json.dumps({"dataframe_split": {"columns": ["text", "image"], "data": rows[i : i + SERVE_ROWS]}}).encode()
            for i in range(0, len(rows), SERVE_ROWS)]


def serve_load(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` threads post ``bodies`` in turn for ``seconds``; latency percentiles and errors."""
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    def client(offset: int) -> None:
        i = offset
        while time.perf_counter() < deadline:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=bodies[i % len(bodies)],
                                             headers={"Content-Type": "application/json"})
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    response.read()
                latencies.append(time.perf_counter() - started)
            except OSError as error:  # HTTPError included
                errors.append(str(error)[:200])
            i += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"clients": clients, "requests": len(latencies), "errors": len(errors), "error_examples": errors[:3],
            "samples_per_s": len(latencies) * SERVE_ROWS / elapsed,
            "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else None,
            "p99_ms": float(np.percentile(latencies, 99) * 1000) if latencies else None}


def raw_forward(backbone_name: str, dataset: Dataset) -> float:
    """Samples/s of the backbone's raw forward (text and image), the reference for the server."""
    backbone = load_backbone(backbone_name)
    texts, pixels = forward_inputs(backbone, dataset, MAX_TOKENS)
    return forward_throughput(backbone, texts, pixels, MAX_TOKENS)["sample_per_s"]


def bench_serve(args, work: Path) -> dict:
    dataset = load_dataset(DataSource(args.data_root))
    bodies = request_bodies(dataset)
    forward = raw_forward(args.backbone, dataset)  # its backbone is freed before the servers start
    store = work / "serve"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    model_uri = log_served_model(store, args.backbone)
    out = {"forward_per_s": forward, "rows_per_request": SERVE_ROWS, "seconds": args.serve_seconds, "runs": []}
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}
    for workers in SERVE_WORKERS:
        port = free_port()
        with serve_model(model_uri, store, env, port, workers) as server:
            serve_load(port, bodies, 1, 5.0)  # warm-up: every worker loads lazily on first use
            for clients in SERVE_CLIENTS:
                run = {"workers": workers, **serve_load(port, bodies, clients, args.serve_seconds)}
                run["ratio_to_forward"] = run["samples_per_s"] / forward
                run["peak_server_pss_bytes"] = tree_memory(server.pid)
                out["runs"].append(run)
                print(f"serve: {workers} worker(s), {clients} clients: {run['samples_per_s']:.2f} samples/s "
                      f"({run['ratio_to_forward']:.2f} of the forward), p50 {run['p50_ms']:.0f} ms, "
                      f"p99 {run['p99_ms']:.0f} ms, {run['errors']} errors")
    return out
