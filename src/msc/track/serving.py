"""A thin ASGI layer in front of MLflow's scoring app: what ``python -m src.serve`` runs.

MLflow's app (``mlflow.pyfunc.scoring_server.init``) answers some malformed requests with HTTP 500
(a POST without ``Content-Type``; a JSON body nested 100,000 levels deep, raising RecursionError), reads
bodies of any size, and answers 504 after its timeout while the model's thread goes on computing.
This layer guards ``POST /invocations`` and passes everything else (``/ping``, ``/health``,
``/version``) through untouched. Per request, in order:

1. ``Content-Type`` must be one MLflow parses (JSON, CSV, Parquet): 415 otherwise, missing included.
2. At most ``CONCURRENCY`` requests per worker process are read and computed at once; the others wait
   (their body not yet read, so it costs no memory), and get 503 if their deadline passes meanwhile.
   A body refused unread (415, 503) is read and dropped first, so that a client still sending it
   reads the answer rather than a reset connection.
3. The body is read up to ``MAX_BODY_BYTES``: 413 beyond (from ``Content-Length`` before reading, or
   while reading a chunked body); 408 if it has not arrived by the deadline.
4. A JSON body is parsed once here (a RecursionError is caught) and its nesting, ``params`` included,
   must be at most ``MAX_JSON_DEPTH``: 400 otherwise. MLflow then parses it again, safely.
5. The deadline (``timeout`` seconds after the request arrived) is put in the model's context
   (msc/model/deadline.py): the pyfunc stops at its next check (before each batch, between the
   backbone and the head) and logs "stopped after batch k of n". The client gets 504 at the deadline;
   the request's slot is given back only when its thread has stopped, which bounds memory.

Every refusal is a JSON ``{"error_code": ..., "message": one sentence}``. Memory per worker is then
about the model plus ``CONCURRENCY`` requests at the limits (measured: README, "Serving").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time

from msc.model.deadline import DEADLINE
from msc.model.inputs import MAX_IMAGE_BASE64_CHARS, MAX_ROWS, MAX_TEXT_CHARS

LOGGER = logging.getLogger("msc.serving")
CONTENT_TYPES = ("application/json", "text/csv", "application/vnd.apache.parquet")  # what MLflow's invocations parses
# The request limits of msc/model/inputs.py as bytes: 9 images at the per-image base64 limit (the pixel
# budget, MAX_REQUEST_PIXELS, takes 9 images at the per-image pixel limit) and MAX_ROWS texts at theirs,
# each character JSON-escaped (\uXXXX: 6 bytes), plus 1 MiB of framing: 195.6 MiB.
MAX_BODY_BYTES = 9 * MAX_IMAGE_BASE64_CHARS + MAX_ROWS * 6 * MAX_TEXT_CHARS + 2**20
# Every request format MLflow reads nests 3 or 4 levels ({"dataframe_split": {"data": [[...]]}}); 16
# leaves room and stays far below what recursion in MLflow, pandas or numpy could trip on.
MAX_JSON_DEPTH = 16
ENV_MODEL_URI, ENV_TIMEOUT, ENV_CONCURRENCY = "MSC_SERVE_MODEL_URI", "MSC_SERVE_TIMEOUT", "MSC_SERVE_CONCURRENCY"
DISCARD_SECONDS = 30  # reading a refused body at most this long: 196 MiB take 2 s at 1 Gbit/s
MLFLOW_TIMEOUT_MARGIN = 600  # s: MLflow's own 504 (which cannot stop the thread) comes this much later than ours


class Refusal(Exception):
    """A request this layer answers itself: HTTP ``status``, MLflow-style ``error_code``, one sentence."""

    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(message)
        self.status, self.error_code = status, error_code


def nesting_depth(value, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, ``[]`` is 1), walked without recursion; stops
    counting once it passes ``limit``."""
    deepest, stack = 0, [(value, 0)]
    while stack and deepest <= limit:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_json_depth(body: bytes) -> None:
    """Refuse (400) a JSON body nested deeper than ``MAX_JSON_DEPTH``. Python's parser raises
    RecursionError near the interpreter's recursion limit; below it, the depth is counted. A body that
    is no JSON at all is left to MLflow, which answers it with 400."""
    try:
        parsed = json.loads(body)
    except RecursionError:
        parsed = None  # deeper than the recursion limit, far deeper than MAX_JSON_DEPTH
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return
    if parsed is None or nesting_depth(parsed) > MAX_JSON_DEPTH:
        raise Refusal(400, "BAD_REQUEST", f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep (params "
                      "included); send a flat dataframe_split, dataframe_records, instances or inputs object")


def check_content_type(headers: dict[bytes, bytes]) -> None:
    value = headers.get(b"content-type", b"").decode("latin-1")
    mime = value.split(";")[0].strip()
    if mime not in CONTENT_TYPES:
        got = f"Content-Type '{value}'" if value else "no Content-Type header"
        raise Refusal(415, "UNSUPPORTED_MEDIA_TYPE", f"the request has {got}; send the body as {', '.join(CONTENT_TYPES)} "
                      "with that Content-Type header")


async def read_body(receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The whole request body, refusing (413) one longer than ``limit`` bytes before it is all in memory."""
    too_large = Refusal(413, "REQUEST_TOO_LARGE", f"the request body is more than {limit:,} bytes; send fewer or "
                        "smaller images per request")
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refusal(400, "BAD_REQUEST", "the client closed the connection before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def discard_body(receive, limit: int) -> None:
    """Read and drop a refused request's unread body (at most ``limit`` bytes, for at most
    ``DISCARD_SECONDS``): a client still sending it then reads the answer, not a reset connection."""
    async def discard():
        size = 0
        while size <= limit:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body", False):  # the last chunk, or http.disconnect
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(discard(), DISCARD_SECONDS)


async def respond(send, status: int, error_code: str, message: str) -> None:
    body = json.dumps({"error_code": error_code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class GuardedScoring:
    """The ASGI app users serve: ``app`` (MLflow's scoring app) behind the checks above. ``timeout``:
    seconds from a request's arrival to its deadline; ``concurrency``: requests read and computed at
    once in this process."""

    def __init__(self, app, timeout: float, concurrency: int = 1, max_body: int = MAX_BODY_BYTES):
        self.app, self.timeout, self.concurrency, self.max_body = app, timeout, concurrency, max_body
        self.slots: asyncio.Semaphore | None = None  # made on first use, in the server's event loop

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/invocations":
            return await self.app(scope, receive, send)
        deadline = time.monotonic() + self.timeout
        headers = dict(scope["headers"])  # ASGI header names are lower-case bytes
        try:
            check_content_type(headers)
            await self.acquire(deadline)
        except Refusal as refusal:  # 415 or 503: the body is still unread
            await discard_body(receive, self.max_body)
            return await respond(send, refusal.status, refusal.error_code, str(refusal))
        try:
            await self.serve(scope, receive, send, headers, deadline)
        finally:
            self.slots.release()

    async def acquire(self, deadline: float) -> None:
        self.slots = self.slots or asyncio.Semaphore(self.concurrency)
        try:
            await asyncio.wait_for(self.slots.acquire(), max(deadline - time.monotonic(), 0))
        except TimeoutError:
            raise Refusal(503, "TEMPORARILY_UNAVAILABLE", f"the server stayed busy with {self.concurrency} other "
                          f"request(s) for this request's whole timeout of {self.timeout:g} s; retry later") from None

    async def serve(self, scope, receive, send, headers: dict[bytes, bytes], deadline: float) -> None:
        """Read and check the body, then run MLflow's app on it with the deadline in its context."""
        try:
            body = await asyncio.wait_for(read_body(receive, headers, self.max_body), deadline - time.monotonic())
            if headers[b"content-type"].split(b";")[0].strip() == b"application/json":
                await asyncio.to_thread(check_json_depth, body)  # a big body parses for a while: off the event loop
        except TimeoutError:
            return await respond(send, 408, "REQUEST_TIMEOUT", f"the request body did not arrive within the server's "
                                 f"timeout of {self.timeout:g} s; send it faster or in smaller requests")
        except Refusal as refusal:
            return await respond(send, refusal.status, refusal.error_code, str(refusal))
        pending, answer = [{"type": "http.request", "body": body, "more_body": False}], []
        del body  # MLflow's app holds the only reference from here on

        async def replay():
            return pending.pop() if pending else await receive()

        async def keep(message):  # MLflow answers in one piece; sent once it is known to be in time
            answer.append(message)

        token = DEADLINE.set(deadline)  # the task copies the context: its thread sees this deadline
        try:
            work = asyncio.ensure_future(self.app(scope, replay, keep))
        finally:
            DEADLINE.reset(token)
        done, _ = await asyncio.wait({work}, timeout=max(deadline - time.monotonic(), 0))
        if done and (not answer or answer[0].get("status") != 504):
            work.result()  # an exception in MLflow's app is uvicorn's 500, as without this layer
            for message in answer:
                await send(message)
            return
        await respond(send, 504, "DEADLINE_EXCEEDED", f"the request took more than the server's timeout of "
                      f"{self.timeout:g} s and its work was stopped; send fewer or smaller images per request")
        LOGGER.warning("answered 504 after the timeout of %g s; waiting for the request's work to stop", self.timeout)
        await asyncio.wait({work})  # keep the slot until the model's thread stops, at its next deadline check
        work.exception()  # retrieved: the client has its answer, the model logged where it stopped
        LOGGER.warning("the request's work stopped %.1f s after its deadline", time.monotonic() - deadline)


def create_app() -> GuardedScoring:
    """The uvicorn app factory of ``python -m src.serve``: the model at ``$MSC_SERVE_MODEL_URI`` (a local
    folder) in MLflow's scoring app, behind ``GuardedScoring`` with ``$MSC_SERVE_TIMEOUT`` and
    ``$MSC_SERVE_CONCURRENCY``. Each uvicorn worker process calls it once."""
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
    from mlflow.pyfunc import scoring_server

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    timeout = float(os.environ[ENV_TIMEOUT])
    os.environ[MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.name] = str(int(timeout) + MLFLOW_TIMEOUT_MARGIN)
    model = scoring_server.load_model_with_mlflow_config(os.environ[ENV_MODEL_URI])
    return GuardedScoring(scoring_server.init(model), timeout, int(os.environ.get(ENV_CONCURRENCY, "1")))
