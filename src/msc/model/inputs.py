"""What the model accepts, row by row: strict rules for untrusted requests, and the trusted path.

Untrusted (the default, and what ``mlflow models serve`` runs): every row needs a string ``text`` (null
is read as an empty text) and an ``image`` that is the image bytes base64-encoded, with or without
line breaks (RFC 2045 MIME base64, as Spark's ``base64()`` writes it) and optionally as a
``data:image/...;base64,`` URL, or raw bytes (a Spark binary column). No value is read as a file name, so no
client can make the server open or probe its files. Each image is capped (``MAX_IMAGE_*``; a decompression
bomb is refused from its header), and a served request (``served()``) in rows and pixels in all too: an
in-process caller (spark_udf, Ray) sends any batch, read ``PREDICT_BATCH`` rows at a time. A violation is an
MlflowException with a bad-request code: the scoring server's HTTP 400 with the sentence naming the row.

Trusted: a caller that loads the model with ``model_config={"trusted_input": True}`` (``src.predict``,
the tests, in-process code, ``mlflow.pyfunc.spark_udf``) may also pass image file paths and raw image
bytes (``bytes``, ``bytearray``, ``memoryview``: a pandas column of bytes, a Spark binary column), and
texts as bytes (decoded like a text file). A null or unreadable text or image is a missing modality,
predicted from the other one, logged, and named in the output's ``used`` and ``input_note`` columns
(msc/model/usage.py). The switch is read at load time; a request cannot set it.

Images are preprocessed to CLIP's pixel array as soon as they are decoded, so one decoded image
at a time is held in memory, whatever the number of rows.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import math
import os
import re
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from PIL import Image, UnidentifiedImageError

from msc.data.images import PixelValueError, open_image, processed_pixels
from msc.data.text import decode_text, without_lone_surrogates
from msc.model.deadline import DEADLINE
from msc.model.usage import IMAGE_UNUSABLE, TEXT_CHANGED

LOGGER = logging.getLogger("msc.serving")
MAX_ROWS = 256  # rows in one request
MAX_TEXT_CHARS = 10_000  # a post is at most a few hundred characters; CLIP reads 77 tokens of it
MAX_IMAGE_BYTES = 15 * 2**20  # per image, once base64-decoded
# Per image, the base64 string, checked before decoding: the limit's base64 (4 characters per 3 bytes),
# a CRLF every 76 characters (MIME) and room for a data-URL prefix.
MAX_IMAGE_BASE64_CHARS = (MAX_IMAGE_BYTES + 2) // 3 * 4 * 78 // 76 + 1024
MAX_IMAGE_PIXELS = 40_000_000  # per image, read from the header before decoding (a 7000x5000 photo passes)
# Per request: the pixels decoded plus the pixels after resizing (msc/data/images.py processed_pixels),
# summed over the rows and checked from the image headers before any image is decoded. A request the
# server takes is then seconds of work, never minutes that go on after the client has given up (the
# scoring server answers 504 after its timeout but cannot stop the computation). 256 photos of 1.5
# megapixels pass, as do 9 images at the per-image limit.
MAX_REQUEST_PIXELS = 400_000_000
# "data:image/jpeg;base64,", also with parameters ("data:image/png;name=x.png;base64,") or no type.
DATA_URL = re.compile(r"^\s*data:(?:[\w.+-]+/[\w.+-]+)?(?:;[\w.+-]+=[^;,]*)*;base64,", re.IGNORECASE)
WHITESPACE = re.compile(r"\s+")
# "true" in a process running MLflow's scoring app (`mlflow models serve`, `src.serve`); never set by spark_udf.
SERVING_ENVIRONMENT = "_MLFLOW_IS_IN_SERVING_ENVIRONMENT"

Preprocess = Callable[[Image.Image], np.ndarray]  # PIL image -> (3, H, W) float32


class Read(NamedTuple):
    """A chunk as the model reads it: per row, its text and preprocessed image, (3, H, W), None where
    missing or unusable, and a note saying why something the caller sent was dropped ("" if nothing)."""

    texts: list[str | None]
    images: list[np.ndarray | None]
    notes: list[str]


def bad_request(row, problem: str) -> MlflowException:
    return MlflowException(f"row {row}: {problem}", error_code=INVALID_PARAMETER_VALUE)


def is_null(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def image_size(raw: bytes, row) -> tuple[int, int]:
    """(width, height) of untrusted image bytes from the header, refusing what is no image or has too
    many pixels; no pixel is decoded."""
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            width, height = probe.size
    except Image.DecompressionBombError:
        raise bad_request(row, f"image has more than {MAX_IMAGE_PIXELS:,} pixels; send a smaller image") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise bad_request(row, "image is not an image file (JPEG, PNG, GIF, WebP, ...) once base64-decoded") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise bad_request(row, f"image is {width}x{height} pixels, more than {MAX_IMAGE_PIXELS:,}; send a smaller image")
    return width, height


def decode_image_bytes(raw: bytes, row) -> Image.Image:
    """Decode untrusted image bytes, refusing what is no image or too many pixels before decoding."""
    image_size(raw, row)
    try:
        return open_image(raw)
    except PixelValueError as error:  # decodes, but NaN or infinite pixels have no grey level
        raise bad_request(row, f"image cannot be used: {error}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise bad_request(row, "image cannot be decoded: the file is truncated or corrupt") from None


def decode_base64(value: str) -> bytes:
    """The bytes of a base64 string, with or without a data-URL prefix and whitespace (the line breaks
    of MIME base64); raises ValueError when it is not base64."""
    try:
        return base64.b64decode(WHITESPACE.sub("", DATA_URL.sub("", value, count=1)), validate=True)
    except binascii.Error as error:
        raise ValueError(str(error)) from None


def served() -> bool:
    """Whether this call is an HTTP request: msc's layer set its deadline (msc/model/deadline.py), or MLflow's
    scoring app runs in this process; neither holds where src.predict, spark_udf or Ray load the model."""
    return DEADLINE.get() is not None or os.environ.get(SERVING_ENVIRONMENT, "").lower() in ("true", "1")


def base64_bytes(value: str | bytes | bytearray | memoryview, row) -> bytes:
    """An untrusted image's bytes, raw or from base64, within the per-image limits."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) > MAX_IMAGE_BYTES:
            raise bad_request(row, f"image is {len(raw):,} bytes, more than {MAX_IMAGE_BYTES:,}")
        return raw
    if len(value) > MAX_IMAGE_BASE64_CHARS:
        raise bad_request(row, f"image is {len(value):,} base64 characters, more than {MAX_IMAGE_BASE64_CHARS:,}")
    try:
        raw = decode_base64(value)
    except ValueError:
        raise bad_request(row, "image is not valid base64; send the image file's bytes base64-encoded") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise bad_request(row, f"image is {len(raw):,} bytes once base64-decoded, more than {MAX_IMAGE_BYTES:,}")
    return raw


def decode_base64_image(value: str | bytes, row) -> Image.Image:
    return decode_image_bytes(base64_bytes(value, row), row)


def check_pixel_budget(frame: pd.DataFrame) -> None:
    """Refuse a request whose images would cost more than ``MAX_REQUEST_PIXELS`` to decode and resize,
    from their headers, before any is decoded."""
    total = 0
    for row, value in zip(frame.index, frame["image"]):
        width, height = image_size(base64_bytes(value, row), row)
        total += width * height + processed_pixels(width, height)
    if total > MAX_REQUEST_PIXELS:
        raise MlflowException(f"the request's images add up to {total:,} pixels to decode and resize, more than "
                              f"{MAX_REQUEST_PIXELS:,}; send fewer or smaller images per request",
                              error_code=INVALID_PARAMETER_VALUE)


def check_columns(frame: pd.DataFrame) -> None:
    missing = {"text", "image"} - set(frame.columns)
    if missing:
        raise MlflowException(f"the input lacks column(s) {', '.join(sorted(missing))}; every row needs 'text' "
                              "(a string) and 'image' (base64-encoded image bytes)", error_code=INVALID_PARAMETER_VALUE)


def check_request(frame: pd.DataFrame, served: bool = True) -> None:
    """The whole request against the rules, before any image is decoded; the first rule a row
    breaks is a bad request. The caps on rows and on pixels in all apply when ``served``."""
    if served and len(frame) > MAX_ROWS:
        raise MlflowException(f"{len(frame)} rows in one request, more than {MAX_ROWS}; split it",
                              error_code=INVALID_PARAMETER_VALUE)
    for row, text, image in zip(frame.index, frame["text"], frame["image"]):
        if not is_null(text) and not isinstance(text, str):
            raise bad_request(row, f"text must be a string, got {type(text).__name__}")
        if not is_null(text) and len(text) > MAX_TEXT_CHARS:
            raise bad_request(row, f"text is {len(text):,} characters, more than {MAX_TEXT_CHARS:,}")
        if is_null(image):
            raise bad_request(row, "image is null; send the image bytes base64-encoded")
        if not isinstance(image, (str, bytes, bytearray, memoryview)):
            raise bad_request(row, f"image must be a base64 string or bytes, got {type(image).__name__}")
    if served:
        check_pixel_budget(frame)


def read_untrusted(chunk: pd.DataFrame, preprocess: Preprocess) -> Read:
    """Texts, preprocessed images and (empty) notes of a chunk of a checked request (``check_request``):
    a row that cannot be read in full was refused.

    A null text is an empty one, a post without text: CSV has no other way to send an empty text
    (pandas reads an empty field as null), and JSON's null and "" then mean the same.
    """
    texts = ["" if is_null(text) else text for text in chunk["text"]]
    images = [preprocess(decode_base64_image(image, row)) for row, image in zip(chunk.index, chunk["image"])]
    return Read(texts, images, [text_note(text) for text in texts])


def text_note(text: str | None) -> str:
    """The note of a text whose unpaired surrogates the model replaces with U+FFFD (normalize_tweet), else ""."""
    replaced = 0 if text is None else without_lone_surrogates(text)[1]
    return f"{TEXT_CHANGED}{replaced} unpaired surrogate code point(s) replaced with U+FFFD" if replaced else ""


def joined_notes(*notes: str) -> str:
    """One row's notes, the image's first (``unusable_images`` reads its start)."""
    return "; ".join(note for note in notes if note)


def hide_parser_tracebacks() -> None:
    """Keep tracebacks of requests MLflow's scoring server cannot parse out of its answers.

    The server answers a body it cannot parse as CSV, JSON or Parquet with the traceback in the JSON
    (its ``_handle_serving_error`` with ``include_traceback=True``), which shows an untrusted client the
    server's paths and versions. Loaded for untrusted clients, the model turns that off: the client keeps
    MLflow's sentence, the traceback goes to the server log.
    """
    import mlflow.pyfunc.scoring_server as server

    original = server._handle_serving_error
    if getattr(original, "hides_tracebacks", False):  # loaded before in this process
        return

    def handle_without_traceback(error_message, error_code, include_traceback=True):
        LOGGER.warning("unparsable request: %s", error_message, exc_info=True)
        original(error_message, error_code, include_traceback=False)

    handle_without_traceback.hides_tracebacks = True
    server._handle_serving_error = handle_without_traceback


def read_trusted_image(value) -> Image.Image:
    """A trusted caller's image: raw bytes (``bytes``, numpy's bytes, ``bytearray``, ``memoryview``), a
    path to an image file, or base64 (MIME line breaks and a data-URL prefix allowed); ValueError
    with the reason when it is none of these or not an image."""
    if isinstance(value, (bytes, bytearray, memoryview)):  # np.bytes_ is a bytes
        return image_from_bytes(bytes(value), "the raw image")
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ValueError(f"image is of type {type(value).__name__}; send a file path, image bytes or base64")
    if is_file(value):
        try:
            raw = Path(value).read_bytes()
        except OSError as error:
            raise ValueError(f"the file {value!r} cannot be read ({error.strerror})") from None
        return image_from_bytes(raw, f"the file {value!r}")
    try:
        raw = decode_base64(value)
    except ValueError:
        raise ValueError(f"{value[:60]!r} is neither an existing file nor base64-encoded image bytes") from None
    return image_from_bytes(raw, "the base64-decoded image")


def is_file(value: str) -> bool:
    try:
        return len(value) < 4096 and Path(value).is_file()
    except (OSError, ValueError):  # a base64 string is no valid file name
        return False


def image_from_bytes(raw: bytes, what: str) -> Image.Image:
    try:
        return open_image(raw)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:  # PIL: OSError when corrupt
        kind = "not an image file" if isinstance(error, UnidentifiedImageError) else f"a truncated or corrupt image ({error})"
        raise ValueError(f"{what} ({len(raw):,} bytes) is {kind}") from None


def read_trusted_text(value) -> str | None:
    """A trusted caller's text: a string, bytes decoded as a text file is (msc/data/text.py), else None."""
    if is_null(value):
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return decode_text(bytes(value))[0]
    return str(value)


def read_trusted(frame: pd.DataFrame, preprocess: Preprocess) -> Read:
    """Texts, preprocessed images and notes; a null or unreadable field becomes None (a missing
    modality), logged with its row and noted, so the sample is predicted from its other modality."""
    texts = [read_trusted_text(text) for text in frame["text"]]
    pixels: list[np.ndarray | None] = []
    notes: list[str] = []
    for row, value in zip(frame.index, frame["image"]):
        try:
            pixels.append(None if is_null(value) else preprocess(read_trusted_image(value)))
            notes.append("")
        except (OSError, ValueError, SyntaxError) as error:
            LOGGER.warning("row %s: image unusable (%s); predicting from its text alone", row, error)
            pixels.append(None)
            notes.append(f"{IMAGE_UNUSABLE}{error}")
    notes = [joined_notes(note, text_note(text)) for note, text in zip(notes, texts)]
    for row, text, image in zip(frame.index, texts, pixels):
        if text is None and image is None:
            LOGGER.warning("row %s: neither text nor image; predicting from the class prior the head learned", row)
        elif text is None:
            LOGGER.warning("row %s: no text; predicting from its image alone", row)
    return Read(texts, pixels, notes)
