"""The served model against inputs from the field (issue 23): thin images, requests that would cost
minutes, tracebacks in answers, and a post without text in every content type the server accepts."""

import io
import json
import os

import pandas as pd
import pytest
from PIL import Image

from benchmarks.processes import free_port, serve_model, tree_peak_rss
from msc.config import with_overrides
from msc.model.inputs import MAX_REQUEST_PIXELS
from msc.tune.runner import tune
from tests.integration.test_serving_http import b64, png, post, split_body

LABELS = {"positive", "neutral", "negative"}
# Extreme widths and heights: CLIP's processor would scale the shorter side of each to 224 first.
THIN_SHAPES = [(20000, 1), (1, 20000), (200000, 1), (1, 200000), (39999, 1000)]


@pytest.fixture()
def server(trained_project, config):
    tune(with_overrides(config, {"tune.trials": 1, "train.epochs": 2}))
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{trained_project / 'mlflow.db'}"}
    with serve_model("models:/msc/Production", trained_project, env, port) as process:
        yield process, port


def labels_of(text: str) -> list[str]:
    return [row["label"] for row in json.loads(text)["predictions"]]


def test_thin_images_cost_little_and_big_requests_are_refused_before_work(server, sample_root):
    process, port = server
    image = b64((sample_root / "data" / "1.jpg").read_bytes())
    assert post(port, split_body([["warm up", image]]))[0] == 200
    before = tree_peak_rss(process.pid)
    for width, height in THIN_SHAPES:  # the 84-byte 1-bit PNG of the report is the first
        thin = b64(png(Image.new("1", (width, height), 1)))
        status, text = post(port, split_body([["a thin image", thin]]))
        assert status == 200 and labels_of(text)[0] in LABELS, f"{width}x{height}: HTTP {status}: {text[:300]}"
    # Four requests of 40 thin-image rows: each is answered, none outlives its client.
    forty = split_body([["thin", b64(png(Image.new("1", (20000, 1), 1)))]] * 40)
    for _ in range(4):
        status, text = post(port, forty)
        assert status == 200 and len(labels_of(text)) == 40, text[:300]
    grown = tree_peak_rss(process.pid) - before
    assert grown < 300 * 2**20, f"peak memory grew by {grown / 2**20:.0f} MiB"
    # Ten images at the per-image limit exceed the request's budget: refused from the headers.
    big = b64(png(Image.new("1", (8000, 5000))))
    status, text = post(port, split_body([["big", big]] * 10))
    assert status == 400 and f"more than {MAX_REQUEST_PIXELS:,}" in text, text[:300]


def test_no_answer_carries_a_traceback(server):
    _, port = server
    bodies = [(b'text,image\n"unterminated,x\n', "text/csv"), (b"PAR1 not parquet", "application/vnd.apache.parquet"),
              (b"{not json", "application/json"), (b"\xff\xfe", "text/csv"),
              (split_body([["hi", b64(b"no image")]]), "application/json")]
    for body, content_type in bodies:
        status, text = post(port, body, content_type)
        assert 400 <= status < 500, f"{content_type} {body[:20]!r}: HTTP {status}"
        assert "stack_trace" not in text and "Traceback" not in text and "site-packages" not in text, text[:500]


def test_a_post_without_text_in_every_content_type(server, sample_root):
    """A null text is an empty one: CSV cannot send an empty string any other way."""
    _, port = server
    image = b64((sample_root / "data" / "1.jpg").read_bytes())
    frame = pd.DataFrame({"text": ["", None, "so happy"], "image": [image] * 3})
    parquet = io.BytesIO()
    frame.to_parquet(parquet)
    records = [{"text": text, "image": image} for text in ("", None, "so happy")]
    bodies = {
        "csv": (frame.to_csv(index=False).encode(), "text/csv"),
        "parquet": (parquet.getvalue(), "application/vnd.apache.parquet"),
        "dataframe_split": (split_body([["", image], [None, image], ["so happy", image]]), "application/json"),
        "dataframe_records": (json.dumps({"dataframe_records": records}).encode(), "application/json"),
        # MLflow turns a null in these two into the text "None" before the model sees it (README):
        # there an empty text is sent as "".
        "instances": (json.dumps({"instances": [{**r, "text": r["text"] or ""} for r in records]}).encode(),
                      "application/json"),
        "inputs": (json.dumps({"inputs": {"text": ["", "", "so happy"], "image": [image] * 3}}).encode(),
                   "application/json"),
    }
    answers = {}
    for name, (body, content_type) in bodies.items():
        status, text = post(port, body, content_type)
        assert status == 200, f"{name}: HTTP {status}: {text[:300]}"
        answers[name] = json.loads(text)["predictions"]
        assert len(answers[name]) == 3 and answers[name][0] == answers[name][1], name  # null == ""
    assert all(answer == answers["csv"] for answer in answers.values())
