from pathlib import Path

import pytest

from msc.core.errors import UserError
from msc.data.dataset import load_dataset, read_label_file
from msc.data.posts import DataSource
from msc.data.text import decode_text, normalize_tweet


def test_decode_prefers_utf8_then_gb18030():
    assert decode_text("café 😀".encode()) == ("café 😀", "utf-8")
    text = "“quoted” … €5"
    assert decode_text(text.encode("gb18030")) == (text, "gb18030")
    assert decode_text("\ufeffhello".encode()) == ("hello", "utf-8")


def test_undecodable_bytes_are_replaced_not_dropped():
    text, encoding = decode_text(b"ok \xff\x81 end")  # no codec of auto takes 0xff (GB18030) and 0x81 (cp1252)
    assert encoding == "utf-8-replaced"
    assert text.startswith("ok ") and text.endswith(" end") and "\ufffd" in text


def test_normalize_keeps_hashtags_emoji_and_non_ascii():
    out = normalize_tweet("RT @bob: Sooo happy 😀 #blessed http://t.co/abc www.x.com día “feliz”")
    assert out.split() == ["RT", "@user", ":", "Sooo", "happy", "😀", "#blessed", "http", "http", "día", "“", "feliz", "”"]


def write_labels(tmp_path: Path, train: str, test: str = "guid,tag\n9,null\n") -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "train.txt").write_text(train)
    (tmp_path / "test_without_label.txt").write_text(test)
    for guid in "12349":
        (tmp_path / "data" / f"{guid}.txt").write_text("hi")
        (tmp_path / "data" / f"{guid}.jpg").write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize(
    "train, message",
    [
        ("1,positive\n", "train.txt:1: expected the header 'guid,tag'"),
        ("guid,tag\n1,positive,extra\n", "train.txt:2: expected 'guid,tag'"),
        ("guid,tag\n1,happy\n", "train.txt:2: guid 1 has unknown tag 'happy'"),
        ("guid,tag\n1,positive\n1,negative\n", "train.txt:3: guid 1 repeats line 2"),
        ("guid,tag\n9,positive\n", "test_without_label.txt:2: guid 9 is also in train.txt:2"),
        ("guid,tag\n1,positive\n7,negative\n", "1 listed samples have no files"),
    ],
)
def test_label_file_errors_name_file_and_line(tmp_path, train, message):
    root = write_labels(tmp_path, train)
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        load_dataset(DataSource(root))


def test_label_file_normalises_bom_crlf_spaces_and_case(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes("\ufeffguid,tag\r\n 1 , Positive \r\n\r\n2,neutral\r\n".encode())
    assert read_label_file(path, test=False) == [("1", "positive", 2), ("2", "neutral", 4)]


def test_missing_root_says_what_to_put_where(tmp_path):
    with pytest.raises(UserError, match="no dataset at .*python -m src.sample"):
        load_dataset(DataSource(tmp_path / "nowhere"))


def test_sample_layout_loads(sample_root):
    dataset = load_dataset(DataSource(sample_root))
    assert len(dataset.labelled) + len(dataset.test) == 240
    assert all(s.label is None for s in dataset.test)
    assert all(s.image_path.is_file() for s in dataset.samples)


def test_latin1_is_not_read_as_gb18030():
    # GB18030 accepts these bytes, as `Tr鑣 d殓u`: auto mode sees the ideograph between Latin letters.
    assert decode_text("Très déçu".encode("latin-1")) == ("Très déçu", "cp1252")
    assert decode_text("Grüße aus München".encode("cp1252")) == ("Grüße aus München", "cp1252")
    japanese = "緑の楽しい日 – 無料"  # two-byte GB18030 forms ending in an ASCII byte, but no Latin letter beside
    assert decode_text(japanese.encode("gb18030")) == (japanese, "gb18030")


def test_an_explicit_text_encoding_is_used_alone_and_replacements_are_flagged():
    assert decode_text("Très".encode("latin-1"), "latin-1") == ("Très", "latin-1")
    text, how = decode_text("Très".encode("latin-1"), "utf-8")
    assert how == "utf-8-replaced" and "\ufffd" in text


def test_an_unknown_text_encoding_is_a_sentence(config):
    from msc.config import with_overrides

    with pytest.raises(UserError, match="data.text_encoding.*codec name"):
        with_overrides(config, {"data.text_encoding": "klingon"})


def test_an_augmented_text_view_is_seeded_and_built_from_the_words():
    import random

    from msc.data.text import augment_text

    text = "RT @user : so happy today #blessed #sun http love it"
    views = [augment_text(text, random.Random(f"0:7:text:{v}")) for v in range(1, 30)]
    assert augment_text(text, random.Random("0:7:text:1")) == views[0], "seeded"
    assert len(set(views)) > 5 and all(view for view in views)
    assert all(set(view.split()) <= set(text.split()) for view in views), "no word is invented"
    assert any("#blessed" not in view for view in views) and any("@user" not in view for view in views)
    assert augment_text("one", random.Random(0)) == "one"
