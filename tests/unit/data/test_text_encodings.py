"""Tweets in UTF-16 or UTF-32 without a byte-order mark are decoded, never cached as letters between
NULs; every guessed codec is listed in the cache manifest (issue 30, item 6)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from msc.core.errors import UserError
from msc.data.dataset import read_posts, sample_folder
from msc.data.posts import DataSource
from msc.data.text import decode_file, decode_text, is_fallback, normalize_tweet, read_post_text
from msc.features.build import featurize
from tests.helpers import cache_sections

TWEET = "RT @friend: Très bien 😀 一起 #tbt http://t.co/x1"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_without_a_bom_are_recognised(codec):
    text, how = decode_text(TWEET.encode(codec))
    assert (text, how) == (TWEET, f"{codec}-no-bom") and is_fallback(how)
    assert decode_text(TWEET.encode("utf-8")) == (TWEET, "utf-8") and not is_fallback("utf-8")


def test_nul_characters_from_a_wrong_decoding_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "7.txt"
    path.write_bytes(TWEET.encode("utf-16-le"))
    with pytest.raises(UserError, match=f"'{path}' read as utf-8(-replaced)? holds NUL characters .*data.text_encoding"):
        decode_file(path, "utf-8")  # the codec a user named: its NULs are not cached either
    path.write_bytes(b"\x00\x01\x02abc")  # odd-length, NULs in no UTF-16 or UTF-32 pattern: no text at all
    with pytest.raises(UserError, match=f"'{path}' read as utf-8 holds NUL characters .*save it as UTF-8"):
        decode_file(path)


def test_a_tables_text_path_in_utf16_be_is_decoded(tmp_path):
    """The sibling entry point: a table's text_path column instead of the course's {guid}.txt."""
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_bytes(TWEET.encode("utf-16-be"))
    pd.DataFrame([{"id": "a", "text_path": "texts/a.txt", "image_path": "", "label": "yes"},
                  {"id": "b", "text_path": "texts/a.txt", "image_path": "", "label": "no"}]).to_csv(
        tmp_path / "posts.csv", index=False)
    post = read_posts(DataSource(tmp_path, "table", "posts.csv")).labelled[0]
    assert read_post_text(post) == (normalize_tweet(TWEET), "utf-16-be-no-bom")


def test_the_cache_manifest_lists_every_guessed_codec(private_config):
    root = Path(private_config.data.root)
    folder = sample_folder(root)
    dataset = read_posts(private_config.data.source)
    first, second = dataset.labelled[0].guid, dataset.test[0].guid
    for guid, codec in ((first, "utf-16-le"), (second, "utf-32-be")):
        path = folder / f"{guid}.txt"
        path.write_bytes(decode_text(path.read_bytes())[0].encode(codec))
    cache, built = featurize(*cache_sections(private_config))
    assert built
    assert cache.manifest.text_fallbacks == {first: "utf-16-le-no-bom", second: "utf-32-be-no-bom"}
    assert cache.manifest.text_encodings["utf-16-le-no-bom"] == 1 and cache.manifest.text_encodings["utf-32-be-no-bom"] == 1
