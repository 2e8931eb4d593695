"""Reading a dataset in either format into posts (msc/data/posts.py), with its label set.

``data.format: mvsa``, the course layout (``data.root``): ``train.txt`` and ``test_without_label.txt``
(``guid,tag``), and the samples ``{guid}.txt`` / ``{guid}.jpg`` in ``data.root/data/`` or directly in
``data.root``. ``data.format: table``: one file of posts (msc/data/table.py).

The label set is ``data.labels`` when given; else the course's three labels for the course layout,
and for a table the labels its labelled rows use, in sorted order.

The split of the labelled posts into train, validation and holdout is in msc/data/split.py.

Label-file normalisation: a UTF-8 BOM, CRLF line ends, blank lines and spaces around fields are
ignored, and tags are lower-cased; anything else that is not ``guid,tag`` is an error naming the
file and line.
"""

from __future__ import annotations

from pathlib import Path

from msc.core.errors import UserError
from msc.core.labels import COURSE_LABELS, check_label_set, refuse_spellings, spelling_hint
from msc.data.posts import Dataset, DataSource, Sample
from msc.data.table import table_posts

TRAIN_FILE = "train.txt"
TEST_FILE = "test_without_label.txt"
NULL_TAG = "null"


def sample_folder(root: Path) -> Path:
    """The folder that holds ``{guid}.txt``/``{guid}.jpg``: ``root/data`` or ``root`` itself."""
    nested = root / "data"
    return nested if nested.is_dir() else root


def read_label_file(path: Path, test: bool, labels: tuple[str, ...] = COURSE_LABELS) -> list[tuple[str, str | None, int]]:
    """Parse ``guid,tag`` lines into (guid, label, line number); test files must say ``null``,
    train files a label of ``labels``."""
    if not path.is_file():
        raise UserError(
            f"{path} is missing; the dataset folder needs {TRAIN_FILE} and {TEST_FILE} "
            "(the course archive's layout), or run `python -m src.sample` for a synthetic one"
        )
    lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    rows: list[tuple[str, str | None, int]] = []
    seen: dict[str, int] = {}
    spellings: dict[str, str] = {}  # each tag as written -> its first line
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
        # Tags are case-insensitive, as the course writes them; a label set with two spellings of one
        # label (data.labels, on purpose) is matched exactly.
        guid, written = fields[0], fields[1]
        tag = written if not test and written in labels else written.lower()
        if test and tag != NULL_TAG:
            raise UserError(f"{path}:{line_number}: guid {guid} has tag {tag!r}; test tags must be 'null'")
        if not test and tag not in labels:
            raise UserError(f"{path}:{line_number}: guid {guid} has unknown tag {written!r}"
                            f"{spelling_hint(written, labels)}; use one of {', '.join(labels)} (or list the label set "
                            "in data.labels)")
        if not test:
            spellings.setdefault(written, f"line {line_number}, guid {guid}")
        if guid in seen:
            raise UserError(f"{path}:{line_number}: guid {guid} repeats line {seen[guid]}; keep one")
        seen[guid] = line_number
        rows.append((guid, None if test else tag, line_number))
    if not header_seen:
        raise UserError(f"{path} is empty; expected the header 'guid,tag' and one line per sample")
    refuse_spellings(spellings, labels, str(path))
    return rows


def check_root(root: Path) -> None:
    if not root.is_dir():
        raise UserError(
            f"no dataset at '{root}': put the course data there ({TRAIN_FILE}, {TEST_FILE} and "
            f"data/{{guid}}.txt|jpg) or your table of posts (data.format: table), set data.root in params.yaml, or "
            "run `python -m src.sample`"
        )


def table_label_set(source: DataSource, labelled: list[Sample]) -> tuple[str, ...]:
    """``data.labels``, else the labels the table's labelled rows use, sorted."""
    if source.labels is not None:
        return source.labels
    return check_label_set(sorted({s.label for s in labelled}), f"the labelled rows of {source.table_path}")


def listing_file(source: DataSource) -> Path:
    """The file that lists the labelled posts: the table, or train.txt."""
    return source.table_path if source.format == "table" else Path(source.root) / TRAIN_FILE


def course_sample(root: Path, guid: str, label: str | None) -> Sample:
    folder = sample_folder(root)
    return Sample(guid, label, folder / f"{guid}.txt", folder / f"{guid}.jpg")


def read_posts(source: DataSource, with_test: bool = True) -> Dataset:
    """Every post ``source`` lists and its label set, with no sample file read. ``with_test=False`` (the
    split) leaves out the course layout's test file, which the split does not need."""
    root = Path(source.root)
    check_root(root)
    if source.format == "table":
        posts = table_posts(source.table_path, source.columns, source.labels)
        labelled = [post for post in posts if post.label]
        return Dataset(root, labelled, [post for post in posts if not post.label], table_label_set(source, labelled),
                       (source.table_path,))
    labels = source.labels or COURSE_LABELS
    train_rows = read_label_file(root / TRAIN_FILE, test=False, labels=labels)
    test_rows = read_label_file(root / TEST_FILE, test=True) if with_test else []
    train_lines = {guid: line for guid, _, line in train_rows}
    for guid, _, line in test_rows:
        if guid in train_lines:
            raise UserError(f"{root / TEST_FILE}:{line}: guid {guid} is also in {TRAIN_FILE}:{train_lines[guid]}; a "
                            "sample is either labelled or test, remove it from one of them")
    return Dataset(root, [course_sample(root, guid, label) for guid, label, _ in train_rows],
                   [course_sample(root, guid, None) for guid, _, _ in test_rows], labels,
                   (root / TRAIN_FILE, root / TEST_FILE))


def missing_files(sample: Sample) -> list[str]:
    """The files ``sample`` lists that do not exist (an absent image is no file listed), by name."""
    return [p.name for p in (sample.text_path, sample.image_path) if p is not None and not p.is_file()]


def load_dataset(source: DataSource, require_test_files: bool = True, require_labelled_files: bool = True) -> Dataset:
    """Read and check the dataset in ``source``; every listed file must exist.

    ``require_test_files=False`` (prediction) lets a test sample miss a file: it is never
    dropped, but predicted from the modality it has. ``require_labelled_files=False`` leaves
    labelled samples' files to the caller (featurize's ``data.on_error`` policy).
    """
    dataset = read_posts(source)
    checked = (dataset.labelled if require_labelled_files else []) + (dataset.test if require_test_files else [])
    missing = [f"{s.guid} ({', '.join(found)})" for s in checked if (found := missing_files(s))]
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        where = dataset.root if source.format == "table" else sample_folder(dataset.root)
        raise UserError(f"{len(missing)} listed samples have no files in {where}: {shown}")
    return dataset
