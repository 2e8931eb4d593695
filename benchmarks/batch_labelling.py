"""Rows per second labelling the same posts in one process, with Spark ``local[2]`` through
``mlflow.pyfunc.spark_udf`` and with Ray Data's ``map_batches`` on two workers, and peak memory per
worker (issue 34; BENCHMARKS.md, "Labelling at scale").

    python -m benchmarks.batch_labelling --backbone models/vit-b-32 [--posts 500] [--work-dir /tmp/msc-batch]

The model is a random late-fusion head on ``--backbone`` (make one with ``python -m src.sample --no-data
--backbone-shape vit-b-32 --backbone-out models/vit-b-32``), registered as ``models:/msc@production`` in a
store of its own; the posts are the synthetic sample's, the image as bytes. Needs the ``[spark]`` and
``[ray]`` extras. ``Labeller`` is the Ray recipe of docs/labelling.md (tests/integration/test_ray_labelling.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd

from msc.config import TrainConfig
from msc.data.synthetic import write_dataset
from msc.model.backbone import load_backbone
from msc.model.heads import build_head
from msc.track.integrity import checked_copy
from msc.track.logged_model import log_trial_model

LABELS = ("positive", "neutral", "negative")


def peak_rss(pid: int | str = "self") -> int:
    """VmHWM of one process, bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


def workers(marker: bytes) -> list[int]:
    """The processes now alive whose command line holds ``marker``: ``pyspark.daemon`` for PySpark's Python
    workers (forked by the daemon, they keep its command line), ``Labeller`` for Ray's (``ray::Labeller``...)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


class Labeller:
    """The registered model loaded once per Ray worker, then batch after batch; keeps each row's ``row``.
    Each worker checks its own copy of the model (checked_copy: every file as logged, no bytecode caches)."""

    def __init__(self, model_uri: str):
        self.model = mlflow.pyfunc.load_model(str(checked_copy(model_uri)))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = self.model.predict(batch[["text", "image"]])
        out.insert(0, "row", batch["row"].to_numpy())  # Ray may return the batches in any order
        return out


def register(work: Path, backbone: str) -> str:
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    experiment = mlflow.create_experiment(f"batch-{time.time_ns()}", artifact_location=str(work / "mlruns"))
    dim = load_backbone(backbone, "main", device="cpu").dim
    with mlflow.start_run(experiment_id=experiment):
        info = log_trial_model(build_head("late", dim, 64, 0.0, 3), TrainConfig(hidden_dim=64), dim, backbone, "main",
                               77, LABELS)
    version = mlflow.register_model(info.model_uri, "msc")
    mlflow.MlflowClient().set_registered_model_alias("msc", "production", version.version)
    return "models:/msc@production"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--posts", type=int, default=500)
    parser.add_argument("--work-dir", default="/tmp/msc-batch")
    args = parser.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.update({"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}", "PYSPARK_PYTHON": sys.executable,
                       "PYTHONPATH": os.pathsep.join(sys.path)})
    write_dataset(work / "data", n=args.posts, seed=5)
    files = sorted((work / "data" / "data").glob("*.jpg"))
    posts = pd.DataFrame({"text": [f.with_suffix(".txt").read_text(errors="replace") for f in files],
                          "image": [f.read_bytes() for f in files]})
    uri = register(work, str(Path(args.backbone).resolve()))

    model = mlflow.pyfunc.load_model(uri)
    start = time.perf_counter()
    expected = model.predict(posts)
    seconds = time.perf_counter() - start
    print(f"one process: {len(posts)} rows in {seconds:.1f} s, {len(posts) / seconds:.1f} rows/s, "
          f"peak memory {peak_rss() / 2**30:.2f} GiB", flush=True)

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    try:
        frame = spark.createDataFrame(posts.reset_index()).repartition(2).cache()
        frame.count()  # the rows in Spark before the clock starts
        label = mlflow.pyfunc.spark_udf(spark, str(checked_copy(uri)))
        start = time.perf_counter()
        out = frame.select("index", label(F.struct("text", "image")).alias("out")).toPandas()
        seconds = time.perf_counter() - start
        peaks = sorted(peak_rss(pid) / 2**30 for pid in workers(b"pyspark.daemon"))
    finally:
        spark.stop()
    out = out.set_index("index").sort_index()
    same = [row["label"] for row in out["out"]] == expected["label"].tolist()
    print(f"spark local[2]: {len(out)} rows in {seconds:.1f} s (model loads included), {len(out) / seconds:.1f} rows/s, "
          f"peak memory per Python worker {', '.join(f'{p:.2f}' for p in peaks)} GiB; labels equal: {same}", flush=True)
    ray_phase(posts, uri, expected)


def ray_phase(posts: pd.DataFrame, uri: str, expected: pd.DataFrame) -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"MLFLOW_TRACKING_URI": os.environ[
        "MLFLOW_TRACKING_URI"]}})
    try:
        dataset = ray.data.from_pandas(posts.rename_axis("row").reset_index()).repartition(2).materialize()
        start = time.perf_counter()
        # One batch per worker, as Spark's two partitions of one Arrow batch each.
        out = dataset.map_batches(Labeller, fn_constructor_args=(uri,), batch_format="pandas",
                                  batch_size=-(-len(posts) // 2), concurrency=2).to_pandas()
        seconds = time.perf_counter() - start
        peaks = sorted(peak_rss(pid) / 2**30 for pid in workers(b"Labeller"))
    finally:
        ray.shutdown()
    same = out.set_index("row").sort_index()["label"].tolist() == expected["label"].tolist()
    print(f"ray data, 2 workers: {len(out)} rows in {seconds:.1f} s (model loads included), {len(out) / seconds:.1f} "
          f"rows/s, peak memory per worker {', '.join(f'{p:.2f}' for p in peaks)} GiB; labels equal: {same}", flush=True)


if __name__ == "__main__":
    main()
