"""A table of posts (``data.format: table``): one ``.csv``, ``.jsonl`` or ``.parquet`` file, a row per post.

Columns, under these names or the ones ``data.columns`` maps them to:

* ``id``: unique per row;
* ``text``, or ``text_path`` (a text file): a row with a non-empty ``text_path`` reads the file;
* ``image_path`` (optional column): an empty cell means the post has no image, and it is read from its
  text alone, as a post whose image is missing;
* ``label`` (optional column): an empty cell means an unlabelled post, to be predicted;
* ``split`` (optional column): ``train``, ``val`` or ``holdout`` for every labelled row fixes the split
  instead of drawing it.

Paths are relative to the table's folder and must stay inside it, so that a table cannot make the
pipeline read any other file. Rows are numbered from 1, the first post (the line after a CSV's
header); every error names the file, the row and the column.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Mapping

import numpy as np
import pandas as pd

from msc.core.errors import UserError
from msc.core.labels import label_problem, refuse_spellings, spelling_hint
from msc.data.posts import Sample

TABLE_COLUMNS = ("id", "text", "text_path", "image_path", "label", "split")
TABLE_FORMATS = (".csv", ".jsonl", ".parquet")
FIXED_SPLITS = ("train", "val", "holdout")


def cell_text(value) -> str:
    """A cell as text: missing (None, NaN, pandas' NA) is "", an integral number has no ".0", the rest is
    str(); a ValueError naming the type for a cell that is no single value (a list, a mapping, bytes)."""
    if isinstance(value, (dict, list, tuple, bytes, bytearray, np.ndarray)):
        raise ValueError(type(value).__name__)
    if value is None or pd.isna(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def text_rows(path: Path, records: list[dict]) -> list[dict[str, str]]:
    """Each record's cells as text (``cell_text``), naming the row and column of a cell that is not one value."""
    rows = []
    for number, record in enumerate(records, start=1):
        row = {}
        for key, value in record.items():
            try:
                row[str(key).strip()] = cell_text(value)
            except ValueError as kind:
                raise UserError(f"{path}, row {number}, column '{key}' holds a {kind}, not a single value; write text, "
                                "a number or a path there") from None
        rows.append(row)
    return rows


def utf8_text(path: Path) -> str:
    """The file's text; a UTF-8 BOM is dropped. Not UTF-8: a sentence naming the line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[error.start]:02x}); save the table as UTF-8") \
            from None


def check_unique(columns: list[str], path: Path) -> None:
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise UserError(f"{path} has the column '{repeated[0]}' twice; rename or remove one")


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The table's column names and its rows as text cells, or a UserError naming the file (and line)."""
    if path.suffix.lower() not in TABLE_FORMATS:
        raise UserError(f"the table of posts '{path}' is a {path.suffix or 'suffix-less'} file; save it as "
                        f"{', '.join(TABLE_FORMATS[:-1])} or {TABLE_FORMATS[-1]}")
    if not path.is_file():
        raise UserError(f"no table of posts at '{path}': set data.table (relative to data.root) to your .csv, .jsonl "
                        "or .parquet file, or run `python -m src.sample --format table` for a synthetic one")
    if path.suffix.lower() == ".jsonl":
        return read_jsonl(path)
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            text = utf8_text(path)
            check_unique([name.strip() for name in next(csv.reader(io.StringIO(text)), [])], path)  # pandas renames
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except UserError:
        raise
    except Exception as error:  # pandas' and pyarrow's parse errors have no common base class
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise UserError(f"{path} cannot be read as a {path.suffix} table ({reason}); fix the file") from None
    columns = [str(name).strip() for name in frame.columns]
    check_unique(columns, path)
    return columns, text_rows(path, frame.to_dict(orient="records"))


def read_jsonl(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """One JSON object per non-blank line; its columns are the keys any row has, in first-seen order."""
    records, columns = [], {}
    for line_number, line in enumerate(utf8_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}:{line_number}: not a JSON object ({error.msg}); write one object per line") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{line_number}: a {type(record).__name__}, not a JSON object; write one object "
                            "per line, such as {\"id\": \"1\", \"text\": \"...\"}")
        check_unique([str(key).strip() for key in record], path)
        columns.update(dict.fromkeys(str(key).strip() for key in record))
        records.append(record)
    return list(columns), text_rows(path, records)


MAX_PATH = 1024  # characters of a path cell; a longer one is no file name any system takes


def inside(folder: Path, cell: str, where: str) -> Path:
    """``cell``, a path relative to ``folder`` ("/" or "\\" separated), as an absolute path under it; refused
    when it is absolute, names a drive, leaves the folder (``..``, also through a symbolic link) or is too
    long: a table names files of its own dataset, never others."""
    relative = PurePosixPath(cell.replace("\\", "/"))
    base = Path(os.path.abspath(folder))
    target = Path(os.path.abspath(base / relative))
    if len(cell) > MAX_PATH or any(len(part) > 255 for part in relative.parts):
        raise UserError(f"{where} is a path of {len(cell)} characters, longer than any file name; fix the cell")
    if (relative.is_absolute() or re.match(r"[A-Za-z]:", cell) or not target.is_relative_to(base)
            or not target.resolve().is_relative_to(base.resolve())):
        raise UserError(f"{where} is {cell!r}, which is outside the table's folder '{folder}'; paths in a table are "
                        "relative to its folder and stay inside it (also through symbolic links): move the file there "
                        "and write its relative path")
    return target


def column_names(present: list[str], mapping: Mapping[str, str], path: Path) -> dict[str, str]:
    """Our column name -> the table's, for the columns it has; a UserError when ``id`` or the text is missing."""
    names = {ours: mapping.get(ours, ours) for ours in TABLE_COLUMNS}
    found = {ours: theirs for ours, theirs in names.items() if theirs in present}

    def named(ours: str) -> str:
        return f"'{names[ours]}'" + (f" (data.columns maps {ours} to it)" if ours in mapping else "")

    if "id" not in found:
        raise UserError(f"{path} has no column {named('id')}; its columns are {', '.join(present) or 'none'}: add it, "
                        "or map id to one of them in data.columns")
    if "text" not in found and "text_path" not in found:
        raise UserError(f"{path} has neither a column {named('text')} nor {named('text_path')}; its columns are "
                        f"{', '.join(present)}: add one, or map text to one of them in data.columns")
    return found


def cell_at(path: Path, number: int, columns: dict[str, str], ours: str) -> str:
    """Where a cell is, for sentences: file, row and the table's name of the column."""
    return f"{path}, row {number}, column '{columns[ours]}'"


def table_posts(path: Path, mapping: Mapping[str, str], labels: tuple[str, ...] | None) -> list[Sample]:
    """Every post of the table at ``path``, in table order (``label`` None: unlabelled).

    ``labels``: the label set a labelled row must use (None: any label). Refuses, naming file, row and
    column: a missing column, an empty table, a repeated id, an empty id, a label outside ``labels``,
    a path outside the table's folder, a bad ``split`` value, and a split column filled for only
    some labelled rows.
    """
    present, rows = read_rows(path)
    columns = column_names(present, mapping, path)
    if not rows:
        raise UserError(f"{path} has no rows; add one row per post (columns {', '.join(columns.values())})")
    folder = path.parent
    seen: dict[str, int] = {}
    spellings: dict[str, str] = {}  # each label as written -> its first row
    posts = []
    for number, row in enumerate(rows, start=1):
        cells = {ours: row.get(theirs, "") for ours, theirs in columns.items()}
        where = functools.partial(cell_at, path, number, columns)

        post_id = cells["id"]
        if not post_id:
            raise UserError(f"{where('id')} is empty; give every post an id")
        if post_id in seen:
            raise UserError(f"{where('id')}: id {post_id!r} repeats row {seen[post_id]}; ids must be unique")
        seen[post_id] = number
        label = cells.get("label", "")
        if label and (problem := label_problem(label)):
            raise UserError(f"{where('label')} is {label!r}: {problem}")
        if label and labels is not None and label not in labels:
            raise UserError(f"{where('label')} is {label!r}{spelling_hint(label, labels)}, which is not in the label set "
                            f"({', '.join(labels)}); fix the row, or add the label to data.labels")
        if label:
            spellings.setdefault(label, f"row {number}, id {post_id!r}")
        split = cells.get("split", "")
        if label and split and split not in FIXED_SPLITS:
            raise UserError(f"{where('split')} is {split!r}; use one of {', '.join(FIXED_SPLITS)}, or leave the "
                            "column out to draw the split")
        text_path = cells.get("text_path", "")
        image_path = cells.get("image_path", "")
        posts.append(Sample(
            guid=post_id, label=label or None,
            text_path=inside(folder, text_path, where("text_path")) if text_path else None,
            image_path=inside(folder, image_path, where("image_path")) if image_path else None,
            text=None if text_path else cells.get("text", ""), split=split or None))
    refuse_spellings(spellings, labels, str(path))
    labelled = [s for s in posts if s.label]
    fixed = [s for s in labelled if s.split]
    if fixed and len(fixed) != len(labelled):
        loose = next(seen[s.guid] for s in labelled if not s.split)
        raise UserError(f"{path}, row {loose}, column '{columns['split']}' is empty, but the column fixes the split of "
                        f"{len(fixed)} other labelled rows; fill it for every labelled row, or leave it empty everywhere "
                        "to draw the split")
    return posts
