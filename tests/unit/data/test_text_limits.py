"""Texts the tokenizer could not take, or too big to read whole (issue 33, kinds 2 and 4): unpaired
surrogates are replaced and counted, never fail a batch; a huge text file is read only as far as the
text limit needs, and the cut is counted, in both dataset formats."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from msc.data.posts import Sample
from msc.data.table import table_posts
from msc.data.text import (
    MAX_TEXT_BYTES,
    decode_file,
    is_fallback,
    normalize_tweet,
    read_post_text,
    without_lone_surrogates,
)


def test_unpaired_surrogates_become_replacement_characters_and_pairs_their_character():
    assert without_lone_surrogates("sad \ud83d") == ("sad \ufffd", 1)
    assert without_lone_surrogates("\ud83d\ude00 and \ude00\ud83d") == ("\U0001f600 and \ufffd\ufffd", 2)
    assert without_lone_surrogates("plain 😀") == ("plain 😀", 0)
    assert "\ud83d" not in normalize_tweet("so \ud83d happy")
    normalize_tweet("so \ud83d happy").encode("utf-8")  # what the tokenizer needs


def test_a_jsonl_tables_lone_surrogate_is_read_replaced_and_counted(tmp_path):
    table = tmp_path / "posts.jsonl"
    rows = [{"id": "a", "text": "fine"}, {"id": "b", "text": "half an emoji \ud83d"}]
    table.write_text("\n".join(json.dumps(row) for row in rows) + "\n")  # json writes "\\ud83d"
    posts = table_posts(table, {}, labels=None)
    read = [read_post_text(post) for post in posts]
    assert [how for _, how in read] == ["inline", "inline-replaced"]
    assert is_fallback("inline-replaced") and not is_fallback("inline")
    assert "\ufffd" in read[1][0]


def write_huge(path, unit: str, bytes_wanted: int, encoding: str = "utf-8"):
    raw = unit.encode(encoding)
    path.write_bytes(raw * (bytes_wanted // len(raw) + 1))
    return path


@pytest.mark.parametrize("layout", ["course", "table text_path"])
def test_a_huge_text_file_is_read_only_as_far_as_the_limit_and_counted(tmp_path, layout):
    # 'é' is 2 bytes and the text starts with one ASCII byte, so the cut falls inside a character: it
    # must stay UTF-8, not fall back to GB18030 or cp1252.
    path = write_huge(tmp_path / "huge.txt", "xé", 20 * MAX_TEXT_BYTES)
    if layout == "course":
        sample = Sample(guid="1", label=None, text_path=path, image_path=None)
    else:
        table = tmp_path / "posts.csv"
        table.write_text("id,text_path\n1,huge.txt\n")
        sample = table_posts(table, {}, labels=None)[0]
    tracemalloc.start()
    text, how = decode_file(sample.text_path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert how == "utf-8+truncated" and is_fallback(how)
    assert set(text) == {"x", "é"} and len(text.encode()) <= MAX_TEXT_BYTES
    assert peak < 8 * MAX_TEXT_BYTES  # the file is 20 times that
    assert read_post_text(sample)[1] == "utf-8+truncated"


def test_a_text_at_the_limit_is_not_truncated_and_utf16_is_cut_on_a_unit(tmp_path):
    exact = tmp_path / "exact.txt"
    exact.write_bytes(b"a" * MAX_TEXT_BYTES)
    assert decode_file(exact)[1] == "utf-8"
    wide = write_huge(tmp_path / "wide.txt", "ab ", 3 * MAX_TEXT_BYTES, "utf-16-le")
    text, how = decode_file(wide)
    assert how == "utf-16-le-no-bom+truncated" and text.startswith("ab ab")
