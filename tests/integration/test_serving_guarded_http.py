"""`python -m src.serve` against malformed and late requests (issue 33, kinds 5 and 6): every one gets a
4xx or a 504 with a sentence, late work stops at the model's next check, and the server keeps serving."""

import http.client
import io
import json
import os
import re
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from benchmarks.processes import free_port, serve_guarded
from msc.config import with_overrides
from msc.track.serving import MAX_BODY_BYTES, MAX_JSON_DEPTH
from msc.tune.runner import tune
from tests.integration.test_serving_http import b64, post, split_body

TIMEOUT = 3  # s, --timeout of the served model


@pytest.fixture()
def server(trained_project, config):
    tune(with_overrides(config, {"tune.trials": 1, "train.epochs": 2}))
    port, log = free_port(), trained_project / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{trained_project / 'mlflow.db'}"}
    with serve_guarded("models:/msc/Production", trained_project, env, port, "--timeout", str(TIMEOUT), log_path=log):
        yield port, log


def raw_post(port: int, headers: dict, body: bytes, declared: int | None = None) -> tuple[int, dict]:
    """POST with exactly ``headers`` (urllib would add a Content-Type); ``declared`` claims a
    Content-Length larger than the ``body`` sent."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.putrequest("POST", "/invocations", skip_accept_encoding=True)
    for name, value in {**headers, "Content-Length": str(declared or len(body))}.items():
        connection.putheader(name, value)
    connection.endheaders(body)
    response = connection.getresponse()
    status, text = response.status, response.read().decode()
    connection.close()
    return status, json.loads(text)


def image(side: int) -> str:
    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    pixels = np.stack([np.tile(ramp, (side, 1)), np.tile(ramp[:, None], (1, side)), np.full((side, side), 7, np.uint8)], -1)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return b64(out.getvalue())


def test_malformed_requests_get_a_4xx_with_a_sentence_and_the_server_stays_up(server):
    port, _ = server
    body = split_body([["so happy", image(64)]])
    deep = b"[" * 100_000 + b"]" * 100_000
    cases = {
        "no Content-Type": (415, {}, body, None, "no Content-Type header"),
        "curl -d's form type": (415, {"Content-Type": "application/x-www-form-urlencoded"}, body, None, "urlencoded"),
        "100,000 levels deep": (400, {"Content-Type": "application/json"}, deep, None, f"more than {MAX_JSON_DEPTH} levels"),
        "deep params": (400, {"Content-Type": "application/json"},
                        body[:-1] + b', "params": {"explain": ' + deep + b"}}", None, "params included"),
        "over the body cap": (413, {"Content-Type": "application/json"}, body, MAX_BODY_BYTES + 1,
                              f"more than {MAX_BODY_BYTES:,} bytes"),
    }
    for name, (expected, headers, payload, declared, sentence) in cases.items():
        status, answer = raw_post(port, headers, payload, declared)
        assert status == expected and sentence in answer["message"], f"{name}: HTTP {status}: {answer}"
        assert "Traceback" not in answer["message"] and answer["message"].count(". ") == 0, answer
    status, text = post(port, body)
    assert status == 200 and json.loads(text)["predictions"][0]["label"], text[:300]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=10) as ping:
        assert ping.status == 200


def test_late_work_gets_504_stops_at_the_next_check_and_the_next_request_is_served(server):
    port, log = server
    small = split_body([["warm up", image(64)]])
    assert post(port, small)[0] == 200
    # 256 rows of 1000x1000 images (inside every limit): 4 batches, each of several seconds on a CPU.
    started = time.monotonic()
    status, text = post(port, split_body([["late", image(1000)]] * 256))
    answered = time.monotonic() - started
    assert status == 504 and f"timeout of {TIMEOUT} s" in json.loads(text)["message"], text[:300]
    assert answered < TIMEOUT + 5, f"answered after {answered:.1f} s"
    for _ in range(120):  # the work stops at its next check, within a batch
        if "work stopped" in log.read_text():
            break
        time.sleep(0.5)
    stopped = re.search(r"stopped after batch (\d) of 4", log.read_text())
    assert stopped and int(stopped.group(1)) < 4 and "work stopped" in log.read_text(), log.read_text()[-3000:]
    started = time.monotonic()
    status, text = post(port, small)
    assert status == 200 and time.monotonic() - started < TIMEOUT, text[:300]
