"""Benchmarks: featurization, one tuning trial, the 30-trial study, prediction and peak memory,
each measured against its reference on this machine, in one run.

    python -m src.sample --no-data --backbone-shape vit-b-32 --backbone-out models/vit-b-32-random
    python -m src.benchmark --data-root ../shared/mvsa --backbone models/vit-b-32-random

Sections (``--only`` picks some; each writes ``<work-dir>/<section>.json``):

- ``featurize``: ``src.featurize`` on every sample of the data folder (the listed ones plus the
  files no label file lists, added as unlabelled test rows), against the backbone's raw forward
  throughput on the same length-sorted text batches and image batches (inputs prepared before the
  timer starts). Peak resident memory of the featurize process tree (DataLoader workers
  included; PSS) on a quarter of the samples and on all of them: bounded means the two are close.
- ``trial``: one 10-epoch trial (``late`` and ``early``) on cached features, against the same
  trial re-encoding every training and validation sample through the frozen backbone each epoch.
  The re-encoding cost per sample is measured on real files through the prediction path and
  multiplied out (10 epochs x train+validation samples); it is an extrapolation from a measured
  per-sample cost, not a run of hours.
- ``study``: ``python -m src.tune --trials 30`` on the full real cache (a fresh study and MLflow
  store under the work dir), and 10-trial studies on 25 % and 50 % of the labelled samples.
- ``predict``: prediction from raw files on the test samples, against the raw forward.
- ``serve``: ``mlflow models serve`` on loopback with 1 and 2 ``--workers``; 1, 4 and 16 concurrent
  clients each send requests of ``SERVE_ROWS`` real test samples (base64 images) for
  ``--serve-seconds``: throughput, p50/p99 latency and errors, against the raw forward. The served
  model is the backbone with an untrained ``late`` head (speed does not depend on the weights),
  logged into a store under the work dir. The clients run on the same 2 cores as the server.

On a GPU (``model.device`` auto) the same command reports GPU figures, with forward latency in
fp32, fp16 and bf16.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
import yaml
from sklearn.model_selection import train_test_split

from src.backbone import load_backbone
from src.config import TrainConfig
from src.data import TEST_FILE, TRAIN_FILE, decode_text, load_dataset, normalize_tweet, read_label_file
from src.errors import UserError, cli
from src.features import MANIFEST, FeatureCache, preprocessing_settings
from src.heads import build_head
from src.images import open_image
from src.io import atomic_write_text
from src.serving import PREDICT_BATCH, MscModel, encode_inputs
from src.split import assign_splits
from src.train import train_head

SECTIONS = ("featurize", "trial", "study", "predict", "serve")
SERVE_CLIENTS = (1, 4, 16)
SERVE_WORKERS = (1, 2)
SERVE_ROWS = 16  # rows per request
REPO = Path(__file__).resolve().parents[1]
FORWARD_BATCHES = 8  # batches of each modality timed for the raw-forward reference
REENCODE_SAMPLES = 128  # samples whose re-encoding cost is measured for the trial comparison
EPOCHS = 10


# --- helpers --------------------------------------------------------------------------------


def run_module(module: str, args: list[str], cwd: Path, sample_memory: bool = False) -> tuple[float, int, str]:
    """Run ``python -m module args`` in ``cwd``: (wall seconds, peak tree PSS bytes or 0, output)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
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


def tree_memory(pid: int) -> int:
    """Proportional set size (PSS) of ``pid`` and all its descendants (DataLoader workers), bytes.

    PSS, not RSS: forked workers share the parent's pages (torch, the interpreter), and summing
    RSS would count those pages once per process.
    """
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            total += int(next(line.split()[1] for line in rollup.splitlines() if line.startswith("Pss:"))) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(child) for child in (task / "children").read_text().split())
        except (OSError, StopIteration):
            continue  # the process ended between two reads
    return total


def write_params(path: Path, data_root: Path, backbone: str, features_dir: Path, **sections) -> Path:
    """A params.yaml: the repository's, pointed at the benchmark's data, backbone and cache."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["root"] = str(data_root)
    params["model"]["backbone"] = backbone
    params["features"].update(dir=str(features_dir), augment_views=0)
    for section, values in sections.items():
        params[section].update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def dataset_view(source: Path, target: Path, labelled_fraction: float = 1.0, add_unlisted: bool = False) -> Path:
    """A data folder that links ``source``'s files: a stratified share of train.txt, and the test
    file, plus (``add_unlisted``) every guid no label file lists, as unlabelled test rows."""
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
    test_guids = [guid for guid, _, _ in test]
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


# --- sections -------------------------------------------------------------------------------


def bench_featurize(args, work: Path) -> dict:
    full_root = dataset_view(args.data_root, work / "data-all", add_unlisted=True)
    quarter_root = dataset_view(args.data_root, work / "data-quarter", 0.25, add_unlisted=False)
    dataset = load_dataset(full_root)
    runs = {}
    for name, root in (("quarter", quarter_root), ("all", full_root)):
        params = write_params(work / f"featurize-{name}.yaml", root, args.backbone, work / f"features-{name}")
        wall, peak, output = run_module("src.featurize", ["--params", str(params), "--force"], work,
                                        sample_memory=True)
        n = len(load_dataset(root).samples)
        runs[name] = {"samples": n, "seconds": wall, "samples_per_s": n / wall, "peak_pss_bytes": peak,
                      "output_tail": output[-800:]}  # featurize's own per-phase times
        print(f"featurize {name}: {n} samples in {wall:.1f}s, peak memory (PSS) {peak / 2**30:.2f} GiB")
    backbone = load_backbone(args.backbone)
    texts, pixels = forward_inputs(backbone, dataset, 77)
    forward = {"fp32": forward_throughput(backbone, texts, pixels, 77)}
    if backbone.device.type == "cuda":
        for precision in ("fp16", "bf16"):
            low = load_backbone(args.backbone, device="cuda", precision=precision)
            forward[precision] = forward_throughput(low, texts, pixels.to(low.dtype), 77)
    elif torch.ops.mkldnn._is_mkldnn_bf16_supported():
        low = load_backbone(args.backbone, device="cpu", precision="bf16")
        forward["bf16"] = forward_throughput(low, texts, pixels.to(low.dtype), 77)
    cache_bytes = sum(p.stat().st_size for p in (work / "features-all").iterdir())
    return {"device": str(backbone.device), "runs": runs, "forward": forward, "cache_bytes": cache_bytes,
            "ratio": runs["all"]["samples_per_s"] / forward["fp32"]["sample_per_s"],
            "memory_ratio_all_vs_quarter": runs["all"]["peak_pss_bytes"] / runs["quarter"]["peak_pss_bytes"]}


def bench_trial(args, work: Path) -> dict:
    cache = FeatureCache(args.features)
    names = np.array(assign_splits(cache.manifest["labels"], 0.15, 0.15, 42))  # the default split parameters
    splits = SimpleNamespace(train=np.flatnonzero(names == "train"), val=np.flatnonzero(names == "val"))
    dataset = load_dataset(args.data_root)
    by_guid = {s.guid: s for s in dataset.labelled}
    backbone = load_backbone(args.backbone)
    # Re-encoding cost: what a trial without the cache does per sample and epoch, on real files.
    rows = splits.train[:REENCODE_SAMPLES]
    samples = [by_guid[cache.guids[r]] for r in rows]
    started = time.perf_counter()
    for start in range(0, len(samples), PREDICT_BATCH):
        chunk = samples[start : start + PREDICT_BATCH]
        encode_inputs(backbone, [decode_text(s.text_path.read_bytes())[0] for s in chunk],
                      [backbone.preprocess_image(open_image(s.image_path)) for s in chunk], 77)
    encode_seconds_per_sample = (time.perf_counter() - started) / len(samples)
    encoded_per_trial = EPOCHS * (len(splits.train) + len(splits.val))
    result = {"train_samples": len(splits.train), "val_samples": len(splits.val),
              "encode_seconds_per_sample": encode_seconds_per_sample, "heads": {}}
    for fusion in ("late", "early"):
        config = replace(TrainConfig(), fusion=fusion, epochs=EPOCHS, patience=EPOCHS)
        started = time.perf_counter()
        train_head(cache, splits.train, splits.val, config)
        cached = time.perf_counter() - started
        reencoding = cached + encoded_per_trial * encode_seconds_per_sample
        result["heads"][fusion] = {"cached_seconds": cached, "reencoding_seconds": reencoding,
                                   "ratio": reencoding / cached}
        print(f"trial {fusion}: cached {cached:.1f}s, re-encoding {reencoding:.0f}s, {reencoding / cached:.0f}x")
    return result


def study_trials(storage: str, study_name: str) -> list[dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage)
    return [{"number": t.number, "state": t.state.name, "fusion": t.params.get("train.fusion"),
             "hidden_dim": t.params.get("train.hidden_dim"), "epochs": t.last_step,
             "seconds": (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None}
            for t in study.trials]


def subset_cache(cache: FeatureCache, params: Path) -> None:
    """The rows of ``cache`` that the data root of ``params`` lists, as a complete cache in that
    params file's features.dir, with the fingerprint and settings featurize would have written."""
    from src.config import load_config
    from src.featurize import cache_fingerprint, data_fingerprint

    config = load_config(params)
    folder = Path(config.features.dir)
    dataset = load_dataset(config.data.root)
    index = {guid: i for i, guid in enumerate(cache.guids)}
    rows = np.array([index[s.guid] for s in dataset.samples])
    labelled = rows[: len(dataset.labelled)]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in ("text_pooled", "text_tokens", "text_mask", "image_pooled", "image_tokens"):
        np.save(folder / f"{name}.npy", cache.array(name)[rows])
    data_hash = data_fingerprint(dataset)
    manifest = {**cache.manifest, "data_fingerprint": data_hash, "n_labelled": len(labelled),
                "fingerprint": cache_fingerprint(config, data_hash), "preprocessing": preprocessing_settings(config),
                "guids": [s.guid for s in dataset.samples], "labels": [s.label for s in dataset.labelled]}
    atomic_write_text(folder / MANIFEST, json.dumps(manifest) + "\n")


def bench_study(args, work: Path) -> dict:
    cache = FeatureCache(args.features)
    out = {}
    for name, fraction, trials in (("all", 1.0, 30), ("half", 0.5, 10), ("quarter", 0.25, 10)):
        project = work / f"study-{name}"
        shutil.rmtree(project, ignore_errors=True)
        project.mkdir(parents=True)
        if fraction < 1.0:
            root = dataset_view(args.data_root, work / f"data-{name}", fraction)
            features = work / f"features-study-{name}"
        else:  # the featurize section's folder and cache (its extra unlisted rows are test rows)
            root, features = work / "data-all", args.features
        storage = f"sqlite:///{project / 'optuna.db'}"
        params = write_params(project / "params.yaml", root, args.backbone, features, tune={"storage": storage})
        if fraction < 1.0:
            subset_cache(cache, params)
        run_module("src.split", ["--params", str(params)], project)
        wall, _, _ = run_module("src.tune", ["--params", str(params), "--trials", str(trials)], project)
        study_name = json.loads((project / "results" / "metrics.json").read_text())["study_name"]
        trials_info = study_trials(storage, study_name)
        cumulative = np.cumsum([t["seconds"] or 0.0 for t in trials_info])
        out[name] = {"labelled": len(load_dataset(root).labelled), "trials": trials, "wall_seconds": wall,
                     "trial_seconds_cumulative": {str(k): float(cumulative[k - 1]) for k in (10, 20, 30) if k <= trials},
                     "trial_list": trials_info}
        print(f"study {name}: {trials} trials, {wall:.0f}s wall")
    return out


def bench_predict(args, work: Path) -> dict:
    dataset = load_dataset(args.data_root)
    backbone = load_backbone(args.backbone)
    frame = pd.DataFrame({"text": [decode_text(s.text_path.read_bytes())[0] for s in dataset.test],
                          "image": [str(s.image_path) for s in dataset.test]})
    texts = [normalize_tweet(t) for t in frame["text"]]
    pixels = torch.from_numpy(np.stack([backbone.preprocess_image(open_image(p)) for p in frame["image"]]))
    forward = forward_throughput(backbone, texts, pixels, 77)["sample_per_s"]
    model = MscModel()
    model.backbone, model.max_text_tokens, model.trusted_input = backbone, 77, True  # image paths
    model.temperature = 1.0  # uncalibrated: the speed is the same
    model.head = build_head("cross_attention", backbone.dim, 256, 0.0).eval()
    started = time.perf_counter()
    predictions = model.predict(None, frame)
    predict = len(frame) / (time.perf_counter() - started)
    assert len(predictions) == len(frame)
    return {"samples": len(frame), "forward_per_s": forward, "predict_per_s": predict, "ratio": predict / forward}


def log_served_model(store: Path, backbone: str) -> str:
    """An untrained ``late`` head over ``backbone``, logged into the MLflow store at ``store``."""
    import mlflow

    from src.serving import log_trial_model

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    experiment = mlflow.set_experiment("serve-benchmark")
    dim = load_backbone(backbone, device="cpu").dim
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        info = log_trial_model(build_head("late", dim, 256, 0.0).eval(), TrainConfig(), dim, backbone, "main", 77)
    return info.model_uri


def serve_load(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` threads post ``bodies`` in turn for ``seconds``; latency percentiles and errors."""
    import urllib.request

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


def free_port() -> int:
    """A loopback port nobody listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(args: list[str], cwd: Path, env: dict, ready_url: str, timeout: float = 300):
    """Start a server in its own process group, wait until ``ready_url`` answers, stop the whole
    group afterwards. Its output goes to a file: a pipe nobody reads would block a chatty server."""
    import signal
    import tempfile
    import urllib.request

    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            deadline = time.time() + timeout
            while True:
                try:
                    urllib.request.urlopen(ready_url, timeout=2)
                    break
                except OSError:
                    if process.poll() is not None or time.time() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"{' '.join(args[:6])} did not start: {log.read()[-3000:]}") from None
                    time.sleep(1)
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


def serve_model(model_uri: str, cwd: Path, env: dict, port: int, workers: int = 1):
    """``mlflow models serve`` of ``model_uri`` on loopback ``port``, as a context manager."""
    return running_server([sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager",
                           "local", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                          cwd, env, f"http://127.0.0.1:{port}/ping")


def bench_serve(args, work: Path) -> dict:
    import base64

    dataset = load_dataset(args.data_root)
    samples = dataset.test[: 4 * SERVE_ROWS]
    rows = [[decode_text(s.text_path.read_bytes())[0], base64.b64encode(s.image_path.read_bytes()).decode()]
            for s in samples]
    bodies = [json.dumps({"dataframe_split": {"columns": ["text", "image"], "data": rows[i : i + SERVE_ROWS]}}).encode()
              for i in range(0, len(rows), SERVE_ROWS)]
    backbone = load_backbone(args.backbone)
    texts, pixels = forward_inputs(backbone, dataset, 77)
    forward = forward_throughput(backbone, texts, pixels, 77)["sample_per_s"]
    del backbone, pixels
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Speed and memory of featurize, tuning and predict, as ratios.")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/mvsa"))
    parser.add_argument("--backbone", default="models/vit-b-32-random")
    parser.add_argument("--work-dir", type=Path, default=Path(".benchmark"),
                        help="caches, studies and the JSON results (default: %(default)s)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    parser.add_argument("--serve-seconds", type=float, default=60.0, help="load per client count (default: %(default)s)")
    args = parser.parse_args(argv)
    sections = args.only.split(",")
    if unknown := set(sections) - set(SECTIONS):
        raise UserError(f"--only: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    if not args.data_root.is_dir():
        raise UserError(f"--data-root {args.data_root} is not a folder; point it at the real MVSA data")
    args.backbone = str(Path(args.backbone).resolve()) if Path(args.backbone).is_dir() else args.backbone
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    args.features = work / "features-all"  # the featurize section's full cache, reused by trial and study
    torch.manual_seed(0)
    bench = {"featurize": bench_featurize, "trial": bench_trial, "study": bench_study, "predict": bench_predict,
             "serve": bench_serve}
    for section in sections:
        if section in ("trial", "study") and not (args.features / MANIFEST).is_file():
            raise UserError(f"section {section} needs the featurize section's cache in {args.features}; "
                            "run with --only featurize first")
        started = time.perf_counter()
        result = {"section": section, "date": time.strftime("%Y-%m-%d"), "torch_threads": torch.get_num_threads(),
                  "cpu_count": os.cpu_count(), **bench[section](args, work)}
        result["section_seconds"] = time.perf_counter() - started
        atomic_write_text(work / f"{section}.json", json.dumps(result, indent=2) + "\n")
        print(f"{section}: wrote {work / f'{section}.json'}")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
