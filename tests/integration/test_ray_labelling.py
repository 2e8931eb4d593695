"""Issue 34, item 1: the registered model labels a Ray Dataset through ``map_batches``, one model per
worker (``Labeller``, the recipe of docs/labelling.md), the image as bytes or as base64, with the labels
and probabilities of the in-process model, in batches over the served 256-row cap. Needs the ``[ray]``
extra; a local Ray of two CPUs."""

import base64

import mlflow
import numpy as np
import pandas as pd
import pytest

from benchmarks.batch_labelling import Labeller
from msc.model.inputs import MAX_ROWS, SERVING_ENVIRONMENT
from tests.integration.test_spark_labelling import PROBABILITIES, posts, registered_model

BATCH = 2 * MAX_ROWS  # rows per map_batches call: over the cap an HTTP request has


def test_ray_map_batches_labels_bytes_and_base64_as_the_model_in_process(tmp_path, monkeypatch, sample_root, tiny_clip):
    ray = pytest.importorskip("ray", reason="the [ray] extra: pip install -e '.[ray]'")
    monkeypatch.delenv(SERVING_ENVIRONMENT, raising=False)
    uri_store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri_store)
    mlflow.set_tracking_uri(uri_store)
    uri = registered_model(tmp_path, tiny_clip)
    frame = posts(sample_root)
    expected = mlflow.pyfunc.load_model(uri, model_config={"trusted_input": True}).predict(
        frame[["text", "path"]].rename(columns={"path": "image"}))
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"MLFLOW_TRACKING_URI": uri_store}})
    try:
        got = {}
        for column, images in (("bytes", frame["binary"]),
                               ("base64", frame["binary"].map(lambda raw: base64.b64encode(raw).decode()))):
            # Two blocks, one per worker, made in this process: a lazy repartition needs a CPU of its own, and
            # the two workers hold both (the run waited until pytest's timeout).
            rows = pd.DataFrame({"row": frame["row"], "text": frame["text"], "image": images})
            dataset = ray.data.from_pandas([rows.iloc[: len(rows) // 2], rows.iloc[len(rows) // 2 :]])
            labelled = dataset.map_batches(Labeller, fn_constructor_args=(uri,), batch_format="pandas",
                                           batch_size=BATCH, concurrency=2)
            got[column] = labelled.to_pandas().set_index("row").sort_index()
    finally:
        ray.shutdown()
    for column, out in got.items():
        assert len(out) == len(frame) > BATCH
        assert out["used"].eq("text+image").all(), column
        assert out["label"].tolist() == expected["label"].tolist(), column
        np.testing.assert_allclose(out[PROBABILITIES].to_numpy(float), expected[PROBABILITIES].to_numpy(float),
                                   atol=1e-5, err_msg=column)
    assert expected["label"].nunique() > 1  # the head tells posts apart: equal labels are no accident
