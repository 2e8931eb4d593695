"""What each prediction used, said in the prediction itself, and the stop for a batch whose images
mostly could not be used.

Two output columns, after every other column of the pyfunc's output:

- ``used``: the modalities whose features the prediction read: ``text+image``, ``text``, ``image`` or
  ``none`` (neither: the class prior the head learned). An empty text that was sent is a text (a post
  without words); a text or image that is null, or that could not be read, is not used.
- ``input_note``: empty when everything the caller sent was used as sent; else why something was
  dropped or changed, e.g. ``image unusable: 'x.jpg' is neither an existing file nor base64-encoded
  image bytes`` or ``text changed: 1 unpaired surrogate code point(s) replaced with U+FFFD``.

A silent text-only prediction was the failure this replaces: a column of raw ``bytes`` read as
``str(bytes)`` made every image unusable, and the only trace was a warning per row in a worker's log.
"""

from __future__ import annotations

from typing import Sequence

USED = "used"
NOTE = "input_note"
USAGE_COLUMNS = (USED, NOTE)
# A batch in which more than this share of the images sent could not be used stops (params.yaml's
# predict.max_unusable_image_share; the pyfunc's model_config key of the same name, checked per call:
# per Arrow batch under spark_udf).
MAX_UNUSABLE_IMAGE_SHARE = 0.5
SHOWN_ROWS = 3  # rows a sentence names
IMAGE_UNUSABLE = "image unusable: "  # how the note of a row whose image was sent but not used begins
TEXT_CHANGED = "text changed: "  # a text the model read with characters replaced (unpaired surrogates)


def used_modalities(texts: Sequence, images: Sequence) -> list[str]:
    """``used`` of each row: which of its text and image (None = missing) the prediction read."""
    names = {(True, True): "text+image", (True, False): "text", (False, True): "image", (False, False): "none"}
    return [names[text is not None, image is not None] for text, image in zip(texts, images)]


def unusable_images(ids: Sequence, notes: Sequence[str]) -> list[tuple[object, str]]:
    """(id, note) of every row whose image was sent but could not be used."""
    return [(row, note) for row, note in zip(ids, notes) if note.startswith(IMAGE_UNUSABLE)]


def images_sent(used: Sequence[str], unusable: list) -> int:
    """How many rows sent an image: those whose prediction used it, and the ``unusable`` ones."""
    return sum("image" in kind for kind in used) + len(unusable)


def first_rows(unusable: list[tuple[object, str]]) -> str:
    """'row a: why; row b: why; ...' of the first ``SHOWN_ROWS``."""
    shown = "; ".join(f"row {row}: {note}" for row, note in unusable[:SHOWN_ROWS])
    return shown + ("; ..." if len(unusable) > SHOWN_ROWS else "")


def unusable_images_sentence(unusable: list[tuple[object, str]], sent: int, threshold: float,
                             setting: str) -> str | None:
    """The sentence that stops a batch when more than ``threshold`` of its ``sent`` images are
    ``unusable``; None when the batch may go on. ``setting`` names where the threshold is set."""
    if not sent or len(unusable) / sent <= threshold:
        return None
    return (f"{len(unusable)} of the {sent} images sent could not be used ({len(unusable) / sent:.0%}, more than "
            f"the {threshold:.0%} that {setting} allows), so the batch was stopped rather than predicted from text "
            f"alone: {first_rows(unusable)}; send image files, raw bytes or base64 (with or without line breaks "
            f"or a data: prefix), or raise {setting} to predict such a batch anyway")
