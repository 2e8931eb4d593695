"""The guarded serving layer (msc/track/serving.py) and the model's deadline (msc/model/deadline.py),
in process, around a stand-in for MLflow's app: fast, no server started."""

import asyncio
import json
import logging
import threading
import time

import pytest

from msc.model.deadline import DEADLINE, DeadlineExceeded, check_deadline
from msc.track.serving import MAX_JSON_DEPTH, GuardedScoring, Refusal, check_json_depth

JSON = [(b"content-type", b"application/json")]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_deep_json_is_refused_with_a_sentence_and_flat_requests_pass():
    flat = json.dumps({"dataframe_split": {"columns": ["text", "image"], "data": [["hi", "aGk="]]},
                       "params": {"explain": True}}).encode()
    check_json_depth(flat)
    check_json_depth(b"{not json")  # MLflow answers that one with 400
    check_json_depth(nested(MAX_JSON_DEPTH))
    for body in (nested(100_000), nested(MAX_JSON_DEPTH + 1),
                 b'{"dataframe_split": {"columns": ["text"], "data": [["hi"]]}, "params": {"x": ' + nested(100_000) + b"}"):
        with pytest.raises(Refusal, match=f"nested more than {MAX_JSON_DEPTH} levels") as refusal:
            check_json_depth(body)
        assert refusal.value.status == 400


def test_check_deadline_stops_only_past_the_deadline_and_says_where(caplog):
    check_deadline(64, 256, 64)  # no deadline: in-process callers and `mlflow models serve`
    token = DEADLINE.set(time.monotonic() + 60)
    check_deadline(64, 256, 64)
    DEADLINE.reset(token)
    token = DEADLINE.set(time.monotonic() - 1)
    try:
        with caplog.at_level(logging.WARNING, "msc.serving"), pytest.raises(DeadlineExceeded) as stopped:
            check_deadline(128, 200, 64, "between the backbone and the head")
    finally:
        DEADLINE.reset(token)
    assert stopped.value.get_http_status_code() == 504
    assert "stopped after batch 2 of 4 (in batch 3, between the backbone and the head)" in caplog.text


class SlowModel:
    """Stands in for MLflow's app: reads the body, runs ``batches`` batches of ``seconds`` each in a
    thread (as MLflow does, context copied) with the model's checks, answers 200, or 504 when stopped."""

    def __init__(self, batches: int, seconds: float):
        self.batches, self.seconds, self.stopped_at, self.running = batches, seconds, None, threading.Semaphore(0)

    def work(self):
        for batch in range(self.batches):
            check_deadline(batch, self.batches, 1)
            time.sleep(self.seconds)
        return b'{"predictions": []}'

    async def __call__(self, scope, receive, send):
        await receive()
        try:
            body, status = await asyncio.to_thread(self.work), 200
        except DeadlineExceeded as error:
            body, status, self.stopped_at = str(error).encode(), 504, time.monotonic()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def call(app, headers, chunks=(b"{}",)):
    messages = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    await app({"type": "http", "method": "POST", "path": "/invocations", "headers": headers}, receive, send)
    body = sent[1]["body"]
    return sent[0]["status"], json.loads(body) if body.startswith(b"{") else body, time.monotonic()


def test_content_type_and_body_size_are_checked_before_the_model_runs():
    app = GuardedScoring(SlowModel(1, 0), timeout=5, max_body=1000)
    status, answer, _ = asyncio.run(call(app, []))
    assert status == 415 and "no Content-Type header" in answer["message"]
    status, answer, _ = asyncio.run(call(app, [(b"content-type", b"application/x-www-form-urlencoded")]))
    assert status == 415 and "application/x-www-form-urlencoded" in answer["message"]
    status, answer, _ = asyncio.run(call(app, JSON, [b" " * 600, b" " * 600]))  # chunked: no Content-Length
    assert status == 413 and "more than 1,000 bytes" in answer["message"]
    status, answer, _ = asyncio.run(call(app, JSON + [(b"content-length", b"5000")]))
    assert status == 413
    assert asyncio.run(call(app, JSON, [b'{"inputs": ', b"[1]}"]))[:2] == (200, {"predictions": []})


def test_a_late_request_gets_504_its_work_stops_and_the_next_waits_for_the_slot():
    model = SlowModel(batches=20, seconds=0.1)
    app = GuardedScoring(model, timeout=0.35, concurrency=1)

    async def two_requests():
        return await asyncio.gather(call(app, JSON), call(app, JSON))

    started = time.monotonic()
    (first, answer, answered), (second, other, _) = asyncio.run(two_requests())
    assert first == 504 and "timeout of 0.35 s" in answer["message"]
    assert answered - started < 1.0  # at its deadline, not after the 2 s of work
    assert model.stopped_at is not None and model.stopped_at - started < 1.0  # stopped at the next check
    assert second == 503 and "busy" in other["message"]  # its own deadline passed while the first held the slot


def test_serve_refuses_bad_options_with_a_sentence(capsys):
    from src.serve import main

    assert main(["--model-uri", "models:/msc@production", "--timeout", "0"]) == 2
    assert main(["--model-uri", "models:/msc@production", "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert "--timeout is 0.0; it must be more than 0" in err and "--port is 70000" in err and "Traceback" not in err
