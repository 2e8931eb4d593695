"""A request's deadline, read by the model between its steps, so that work stops once nobody waits for it.

The serving layer (msc/track/serving.py) sets ``DEADLINE`` (a ``time.monotonic()`` instant) for each
request; MLflow runs the model in ``asyncio.to_thread``, which copies the context, so the model's
thread sees the request's own deadline. The pyfunc calls ``check_deadline`` before each batch and
between the backbone and the head; past the deadline it logs where it stopped and raises
``DeadlineExceeded`` (HTTP 504). Unset (``mlflow models serve``, ``src.predict``, in-process code) it
does nothing.
"""

from __future__ import annotations

import contextvars
import logging
import time

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import DEADLINE_EXCEEDED

LOGGER = logging.getLogger("msc.serving")
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("msc_request_deadline", default=None)


class DeadlineExceeded(MlflowException):
    """The request's deadline passed while the model worked on it; MLflow answers it with HTTP 504."""

    def __init__(self, message: str):
        super().__init__(message, error_code=DEADLINE_EXCEEDED)


def check_deadline(start: int, rows: int, batch_size: int, where: str = "") -> None:
    """Raise ``DeadlineExceeded`` when this request's deadline has passed. ``start`` is the first row of
    the batch about to run (or running, with ``where`` naming the point inside it), of ``rows`` rows
    in batches of ``batch_size``."""
    deadline = DEADLINE.get()
    if deadline is None or time.monotonic() <= deadline:
        return
    done, total = start // batch_size, -(-rows // batch_size)
    inside = f" (in batch {done + 1}, {where})" if where else ""
    LOGGER.warning("request past its deadline by %.1f s: stopped after batch %d of %d%s",
                   time.monotonic() - deadline, done, total, inside)
    raise DeadlineExceeded(f"the request took longer than the server's timeout and was stopped after batch "
                           f"{done} of {total}; send fewer or smaller images per request")
