"""Issue 34, item 1: the registered model labels a Spark DataFrame through ``mlflow.pyfunc.spark_udf``
(Spark ``local[2]``, its default Arrow batches of 10,000 rows), the image as a binary column, as Spark's
own ``base64()`` (MIME line breaks) or as a trusted path, with the labels and probabilities of the
in-process model. Needs the ``[spark]`` extra and Java; one JVM start, about 10 s."""

import os
import shutil
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from msc.config import TrainConfig
from msc.model.heads import build_head
from msc.model.inputs import MAX_ROWS, SERVING_ENVIRONMENT
from msc.track.integrity import checked_copy
from msc.track.logged_model import log_trial_model

LABELS = ("positive", "neutral", "negative")
PROBABILITIES = [f"p_{label}" for label in LABELS]
COPIES = 3  # the sample's 240 posts three times: 360 rows per partition, over the 256-row request cap


def registered_model(root: Path, tiny_clip: Path) -> str:
    """``models:/msc@production``: a random late-fusion head on the tiny CLIP, registered in a store of its own.
    Seeded: this seed's head gives the sample's posts all three labels (seed 0's gave 237 of 240 one label)."""
    experiment = mlflow.create_experiment("spark", artifact_location=str(root / "mlruns"))
    torch.manual_seed(2)
    with mlflow.start_run(experiment_id=experiment):
        info = log_trial_model(build_head("late", 128, 8, 0.0, 3), TrainConfig(hidden_dim=8), 128, str(tiny_clip),
                               "main", 77, LABELS)
    version = mlflow.register_model(info.model_uri, "msc")
    mlflow.MlflowClient().set_registered_model_alias("msc", "production", version.version)
    return "models:/msc@production"


def posts(sample_root: Path) -> pd.DataFrame:
    files = sorted((sample_root / "data").glob("*.jpg"))
    frame = pd.DataFrame({"guid": [f.stem for f in files], "text": [f.with_suffix(".txt").read_text(errors="replace")
                                                                     for f in files],
                          "path": [str(f) for f in files], "binary": [f.read_bytes() for f in files]})
    frame = pd.concat([frame] * COPIES, ignore_index=True)
    frame.insert(0, "row", frame.index)  # Spark's output comes back in any order
    return frame


@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java (.ci/run installs openjdk-17-jre-headless)")
def test_spark_udf_labels_binary_base64_and_path_columns_as_the_model_in_process(tmp_path, monkeypatch, sample_root,
                                                                                 tiny_clip):
    pyspark = pytest.importorskip("pyspark", reason="the [spark] extra: pip install -e '.[spark]'")
    from pyspark.sql import functions as F

    monkeypatch.delenv(SERVING_ENVIRONMENT, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # the workers run this venv
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    uri = registered_model(tmp_path, tiny_clip)
    frame = posts(sample_root)
    expected = mlflow.pyfunc.load_model(uri, model_config={"trusted_input": True}).predict(
        frame[["text", "path"]].rename(columns={"path": "image"}))
    spark = (pyspark.sql.SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.driver.host", "127.0.0.1").getOrCreate())
    try:
        rows = spark.createDataFrame(frame).repartition(2).withColumn("b64", F.base64("binary"))
        assert rows.rdd.getNumPartitions() == 2
        sizes = rows.rdd.glom().map(len).collect()
        assert min(sizes) > MAX_ROWS  # one Arrow batch per partition, over the request cap
        # What docs/labelling.md shows: the checked copy with the logged (untrusted) config for image bytes
        # and base64; the registered version's URI, trusted, for paths.
        label = mlflow.pyfunc.spark_udf(spark, str(checked_copy(uri)))
        label_paths = mlflow.pyfunc.spark_udf(spark, uri, model_config={"trusted_input": True})
        out = rows.select(
            "row", "b64",
            label(F.struct("text", F.col("binary").alias("image"))).alias("from_binary"),
            label(F.struct("text", F.col("b64").alias("image"))).alias("from_base64"),
            label_paths(F.struct("text", F.col("path").alias("image"))).alias("from_path"),
        ).toPandas()
    finally:
        spark.stop()
        mlflow.set_tracking_uri(None)
    assert "\r\n" in out.loc[0, "b64"]  # Spark's base64() writes MIME: a line break every 76 characters
    assert len(out) == len(frame) == 240 * COPIES
    out = out.set_index("row").sort_index()
    for column in ("from_binary", "from_base64", "from_path"):
        got = pd.DataFrame(out[column].tolist(), index=out.index)
        assert got["used"].eq("text+image").all(), column
        assert got["label"].tolist() == expected["label"].tolist(), column
        np.testing.assert_allclose(got[PROBABILITIES].to_numpy(float), expected[PROBABILITIES].to_numpy(float),
                                   atol=1e-5, err_msg=column)
    assert expected["label"].nunique() > 1  # the head tells posts apart: equal labels are no accident
