"""The course dataset: label files, tweet decoding and normalisation, and the three splits.

Layout (``data.root``): ``train.txt`` and ``test_without_label.txt`` (``guid,tag``), and the
samples ``{guid}.txt`` / ``{guid}.jpg`` in ``data.root/data/`` or directly in ``data.root``.

The split of train.txt into train, validation and holdout is the split stage's (src/split.py).

Label-file normalisation: a UTF-8 BOM, CRLF line ends, blank lines and spaces around fields are
ignored, and tags are lower-cased; anything else that is not ``guid,tag`` is an error naming the
file and line.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from src import LABELS
from src.errors import UserError

TRAIN_FILE = "train.txt"
TEST_FILE = "test_without_label.txt"
NULL_TAG = "null"
MAX_TEXT_CHARS = 2000  # CLIP reads at most 77 tokens; longer texts are cut before tokenizing


@dataclass(frozen=True)
class Sample:
    guid: str
    label: str | None  # None for test samples
    text_path: Path
    image_path: Path


@dataclass(frozen=True)
class Dataset:
    root: Path
    labelled: list[Sample]  # train.txt, in file order
    test: list[Sample]  # test_without_label.txt, in file order

    @property
    def samples(self) -> list[Sample]:
        """Labelled then test samples: the row order of the feature cache."""
        return self.labelled + self.test


def sample_folder(root: Path) -> Path:
    """The folder that holds ``{guid}.txt``/``{guid}.jpg``: ``root/data`` or ``root`` itself."""
    nested = root / "data"
    return nested if nested.is_dir() else root


def read_label_file(path: Path, test: bool) -> list[tuple[str, str | None, int]]:
    """Parse ``guid,tag`` lines into (guid, label, line number); test files must say ``null``,
    train files a known label."""
    if not path.is_file():
        raise UserError(
            f"{path} is missing; the dataset folder needs {TRAIN_FILE} and {TEST_FILE} "
            "(the course archive's layout), or run `python -m src.sample` for a synthetic one"
        )
    lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    rows: list[tuple[str, str | None, int]] = []
    seen: dict[str, int] = {}
    header_seen = False
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = [part.strip() for part in line.split(",")]
        if not header_seen:
            if [f.lower() for f in fields] != ["guid", "tag"]:
                raise UserError(
                    f"{path}:{line_number}: expected the header 'guid,tag', found {line.strip()!r}"
                )
            header_seen = True
            continue
        if len(fields) != 2 or not fields[0]:
            raise UserError(f"{path}:{line_number}: expected 'guid,tag', found {line.strip()!r}")
        guid, tag = fields[0], fields[1].lower()
        if test and tag != NULL_TAG:
            raise UserError(f"{path}:{line_number}: guid {guid} has tag {tag!r}; test tags must be 'null'")
        if not test and tag not in LABELS:
            raise UserError(
                f"{path}:{line_number}: guid {guid} has unknown tag {tag!r}; use one of {', '.join(LABELS)}"
            )
        if guid in seen:
            raise UserError(f"{path}:{line_number}: guid {guid} repeats line {seen[guid]}; keep one")
        seen[guid] = line_number
        rows.append((guid, None if test else tag, line_number))
    if not header_seen:
        raise UserError(f"{path} is empty; expected the header 'guid,tag' and one line per sample")
    return rows


def load_dataset(root: str | Path, require_test_files: bool = True, require_labelled_files: bool = True) -> Dataset:
    """Read and check both label files; every listed guid must have its text and image.

    ``require_test_files=False`` (prediction) lets a test sample miss a file: it is never
    dropped, but predicted from the modality it has. ``require_labelled_files=False`` leaves
    labelled samples' files to the caller (featurize's ``data.on_error`` policy).
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"no dataset at '{root}': put the course data there ({TRAIN_FILE}, {TEST_FILE} and "
            f"data/{{guid}}.txt|jpg), set data.root in params.yaml, or run `python -m src.sample`"
        )
    train_rows = read_label_file(root / TRAIN_FILE, test=False)
    test_rows = read_label_file(root / TEST_FILE, test=True)
    train_lines = {guid: line for guid, _, line in train_rows}
    for guid, _, line in test_rows:
        if guid in train_lines:
            raise UserError(
                f"{root / TEST_FILE}:{line}: guid {guid} is also in {TRAIN_FILE}:{train_lines[guid]}; a sample is "
                "either labelled or test, remove it from one of them"
            )
    folder = sample_folder(root)
    samples = [
        Sample(guid, label, folder / f"{guid}.txt", folder / f"{guid}.jpg")
        for guid, label, _ in train_rows + test_rows
    ]
    missing = [
        f"{s.guid} ({', '.join(p.name for p in (s.text_path, s.image_path) if not p.is_file())})"
        for s in (samples[: len(train_rows)] if require_labelled_files else []) + (
            samples[len(train_rows) :] if require_test_files else [])
        if not (s.text_path.is_file() and s.image_path.is_file())
    ]
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise UserError(f"{len(missing)} listed samples have no files in {folder}: {shown}")
    return Dataset(root, samples[: len(train_rows)], samples[len(train_rows) :])


def implausible_gb18030(text: str) -> bool:
    """Whether a GB18030 decode looks like Latin-1/cp1252 bytes read as GB18030.

    Latin-1 puts one high byte between ASCII letters; GB18030 then pairs it with the next letter
    into an ideograph (``Très`` becomes ``Tr鑣``). So: a character whose two-byte GB18030 form ends
    in an ASCII byte, with an ASCII letter beside it. None of the course archive's 1131 GB18030
    texts (Chinese, Japanese, Cyrillic, curly quotes) has one.
    """
    for i, char in enumerate(text):
        if ord(char) > 127 and len(encoded := char.encode("gb18030")) == 2 and encoded[1] < 0x80:
            beside = text[max(0, i - 1) : i] + text[i + 1 : i + 2]
            if any(c.isascii() and c.isalpha() for c in beside):
                return True
    return False


def decode_text(raw: bytes, encoding: str = "auto") -> tuple[str, str]:
    """Decode tweet bytes; returns (text, how) where ``how`` names the codec that was used.

    ``auto``: UTF-8 (BOM stripped); else GB18030, the course archive's other encoding, unless the
    result looks like Latin-1 read as GB18030 (``implausible_gb18030``); else cp1252; else UTF-8 with
    U+FFFD for the bytes no codec took. Any other ``encoding`` is that codec alone. ``how`` ends in
    ``-replaced`` when characters were replaced: those texts are counted and reported by featurize.
    """
    if encoding != "auto":
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            return raw.decode(encoding, errors="replace"), f"{encoding}-replaced"
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = raw.decode("gb18030")
        if not implausible_gb18030(text):
            return text, "gb18030"
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), "utf-8-replaced"


@lru_cache(maxsize=1)
def _tweet_tokenizer():
    from nltk.tokenize import TweetTokenizer  # needs no NLTK data download

    return TweetTokenizer(preserve_case=True)


_URL = re.compile(r"^(https?://|www\.)", re.IGNORECASE)
URL_PLACEHOLDER = "http"  # the TweetEval convention; CLIP's BPE knows both placeholders
USER_PLACEHOLDER = "@user"


def normalize_tweet(text: str) -> str:
    """Tokenize with NLTK's TweetTokenizer; URLs and @mentions become placeholders.

    Hashtags, emoji and every script are kept: there is no ASCII filter.
    """
    tokens = _tweet_tokenizer().tokenize(text[:MAX_TEXT_CHARS])
    out = []
    for token in tokens:
        if _URL.match(token):
            out.append(URL_PLACEHOLDER)
        elif token.startswith("@") and len(token) > 1:
            out.append(USER_PLACEHOLDER)
        else:
            out.append(token)
    return " ".join(out)


WORD_DROPOUT = 0.1  # each word of an augmented text view is dropped with this probability
ADJACENT_SWAP = 0.1  # each pair of neighbouring words is swapped with this probability


def augment_text(text: str, rng: random.Random) -> str:
    """One augmented view of a normalised tweet (``normalize_tweet``'s output), with no corpus:
    hashtags, mentions and URLs are kept or dropped, each kind as a whole (a coin each), then
    words are dropped and neighbours swapped. Never empty: the first word survives a full dropout."""
    words = text.split()
    for is_kind in (lambda w: w.startswith("#") and len(w) > 1, lambda w: w == USER_PLACEHOLDER,
                    lambda w: w == URL_PLACEHOLDER):
        if rng.random() < 0.5:
            words = [w for w in words if not is_kind(w)]
    kept = [w for w in words if rng.random() >= WORD_DROPOUT] or words[:1]
    i = 0
    while i < len(kept) - 1:
        if rng.random() < ADJACENT_SWAP:
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
            i += 1  # a word moves at most one place
        i += 1
    return " ".join(kept)


def read_tweet(path: Path, encoding: str = "auto") -> tuple[str, str]:
    """A sample's normalised text, as the backbone sees it, and the codec ``decode_text`` used."""
    text, how = decode_text(path.read_bytes(), encoding)
    return normalize_tweet(text), how
