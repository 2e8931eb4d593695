"""Issue 34, item 1: the request caps (rows, pixels in all) protect an HTTP server, and only a served request
meets them; an in-process caller (spark_udf, Ray, src.predict) labels a batch of any size, read
PREDICT_BATCH rows at a time. The Spark run itself is tests/test_spark_labelling.py (integration)."""

import asyncio
import base64
import json
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from msc.core.labels import COURSE_LABELS
from msc.model import pyfunc
from msc.model.deadline import DEADLINE
from msc.model.inputs import MAX_ROWS, SERVING_ENVIRONMENT, read_untrusted, served

LABELS = COURSE_LABELS  # the session model_folder's (tests/conftest.py)
PROBABILITIES = [f"p_{label}" for label in LABELS]


@pytest.fixture
def in_process(monkeypatch):
    """No scoring server in this process (another test may have started MLflow's app in it)."""
    monkeypatch.delenv(SERVING_ENVIRONMENT, raising=False)


def many_rows(sample_root: Path, rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``rows`` posts over the sample's first 5 images: as paths, and as base64 / raw bytes alternating."""
    files = sorted((sample_root / "data").glob("*.jpg"))[:5]
    paths = [str(files[i % 5]) for i in range(rows)]
    raws = [Path(path).read_bytes() for path in paths]
    sent = [base64.encodebytes(raw).decode() if i % 2 else raw for i, raw in enumerate(raws)]  # \n every 76
    texts = [f"post {i} #happy" for i in range(rows)]
    return pd.DataFrame({"text": texts, "image": paths}), pd.DataFrame({"text": texts, "image": sent})


def test_an_in_process_batch_over_the_row_cap_is_labelled_as_its_rows_are_one_by_one(model_folder, sample_root,
                                                                                       in_process):
    rows = MAX_ROWS + 44
    by_path, by_content = many_rows(sample_root, rows)
    untrusted = mlflow.pyfunc.load_model(str(model_folder))  # the logged config: untrusted, as a plain spark_udf
    trusted = mlflow.pyfunc.load_model(str(model_folder), model_config={"trusted_input": True})
    assert not served()
    out = untrusted.predict(by_content)
    expected = trusted.predict(by_path)
    assert len(out) == rows and out["used"].eq("text+image").all()
    assert out["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(out[PROBABILITIES].to_numpy(float), expected[PROBABILITIES].to_numpy(float), atol=1e-6)
    single = trusted.predict(by_path.iloc[[7]])  # one row alone: chunking changes nothing
    np.testing.assert_allclose(expected.loc[[7], PROBABILITIES].to_numpy(float), single[PROBABILITIES].to_numpy(float),
                               atol=1e-6)


def test_images_are_decoded_one_chunk_at_a_time(model_folder, sample_root, in_process, monkeypatch):
    chunks = []

    def spy(chunk, preprocess):
        chunks.append(len(chunk))
        return read_untrusted(chunk, preprocess)

    model = mlflow.pyfunc.load_model(str(model_folder))
    _, by_content = many_rows(sample_root, 2 * pyfunc.PREDICT_BATCH + 5)
    inner = model.unwrap_python_model()
    monkeypatch.setattr(pyfunc, "read_untrusted", spy)
    out = inner.predict(None, by_content)
    assert chunks == [pyfunc.PREDICT_BATCH, pyfunc.PREDICT_BATCH, 5] and len(out) == len(by_content)


@pytest.mark.parametrize("how", ["mlflow's environment variable", "msc's request deadline"])
def test_a_served_request_over_the_row_cap_is_refused(model_folder, sample_root, in_process, monkeypatch, how):
    model = mlflow.pyfunc.load_model(str(model_folder))
    _, by_content = many_rows(sample_root, MAX_ROWS + 1)
    if how == "mlflow's environment variable":
        monkeypatch.setenv(SERVING_ENVIRONMENT, "true")
    token = DEADLINE.set(time.monotonic() + 60) if how == "msc's request deadline" else None
    try:
        assert served()
        with pytest.raises(MlflowException, match=f"{MAX_ROWS + 1} rows in one request, more than {MAX_ROWS}; split it") \
                as refused:
            model.predict(by_content)
    finally:
        if token is not None:
            DEADLINE.reset(token)
    assert refused.value.get_http_status_code() == 400
    assert model.predict(by_content.iloc[:MAX_ROWS])["used"].eq("text+image").all()  # at the cap: served


def invoke(app, body: dict) -> tuple[int, dict]:
    """POST /invocations to an ASGI app in this process: (status, JSON answer)."""
    raw, sent = json.dumps(body).encode(), []

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": [(b"content-type", b"application/json")],
             "query_string": b"", "root_path": "", "scheme": "http", "server": ("test", 80), "client": ("test", 1),
             "http_version": "1.1", "asgi": {"version": "3.0"}}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_mlflows_scoring_app_marks_its_process_as_serving(model_folder, sample_root, in_process):
    """The scoring app that `mlflow models serve` and `python -m src.serve` run sets the variable that
    ``served()`` reads: a request over the cap through it is a 400, an in-process call before it was not."""
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(str(model_folder))
    _, by_content = many_rows(sample_root, MAX_ROWS + 1)
    by_content["image"] = [base64.b64encode(image).decode() if isinstance(image, bytes) else image
                           for image in by_content["image"]]  # JSON carries strings
    app = scoring_server.init(model)
    assert served()
    status, answer = invoke(app, {"dataframe_split": by_content.to_dict(orient="split")})
    assert status == 400 and f"more than {MAX_ROWS}; split it" in answer["message"]
