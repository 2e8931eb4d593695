"""The course dataset: its two label files and the sample files they list.

Layout (``data.root``): ``train.txt`` and ``test_without_label.txt`` (``guid,tag``), and the
samples ``{guid}.txt`` / ``{guid}.jpg`` in ``data.root/data/`` or directly in ``data.root``.

The split of train.txt into train, validation and holdout is in msc/data/split.py.

Label-file normalisation: a UTF-8 BOM, CRLF line ends, blank lines and spaces around fields are
ignored, and tags are lower-cased; anything else that is not ``guid,tag`` is an error naming the
file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from msc.core.errors import UserError
from msc.core.labels import LABELS

TRAIN_FILE = "train.txt"
TEST_FILE = "test_without_label.txt"
NULL_TAG = "null"


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
