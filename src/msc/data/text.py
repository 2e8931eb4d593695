"""Tweet texts: decoding bytes of unknown encoding, normalisation for the backbone, and augmented views.

No downloaded corpus is needed: NLTK's TweetTokenizer works without NLTK data.
"""

from __future__ import annotations

import codecs
import random
import re
from functools import lru_cache
from pathlib import Path

from msc.core.errors import UserError
from msc.data.posts import Sample

TOKENIZED_CHARS = 2000  # CLIP reads at most 77 tokens; a longer text is cut to this many characters first
# A text file is read up to this many bytes: TOKENIZED_CHARS characters take at most 8000 (UTF-32), and
# a 2 GiB file read whole cost 4.7 GB of memory (issue 33). A multiple of 4, so UTF-16 and UTF-32 units
# stay whole; a text cut here is decoded as "<codec>+truncated" and counted as such.
MAX_TEXT_BYTES = 64 * 1024
TRUNCATED = "+truncated"
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


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


# Byte-order marks and the codec each announces, UTF-32 first: its little-endian BOM begins with UTF-16's.
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode_by_bom(raw: bytes) -> tuple[str, str] | None:
    """(text, codec) when ``raw`` starts with a byte-order mark, else None. The "utf-16" and "utf-32"
    codecs read the BOM for the byte order and drop it."""
    for bom, codec in BOMS:
        if raw.startswith(bom):
            name = codec.removesuffix("-sig")
            try:
                return raw.decode(codec), name
            except UnicodeDecodeError:  # an odd number of bytes, say: the mark still names the codec
                return raw.decode(codec, errors="replace"), f"{name}-replaced"
    return None


# C0 and C1 control characters other than tab and line breaks: none is in a tweet.
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def decode_without_bom(raw: bytes) -> tuple[str, str] | None:
    """(text, "<codec>-no-bom") for UTF-32 or UTF-16 bytes without a byte-order mark, else None.

    Told by where the NUL bytes fall, which a text in any 8-bit codec or UTF-8 never holds (UTF-8
    reads them as U+0000, valid, so this runs first): UTF-32 has a NUL as the top byte of every
    4-byte unit (code points end at U+10FFFF); UTF-16 has a NUL as the high byte of every Latin
    character, so more NULs in the high bytes than in the low ones (U+4E00 has one in its low byte).
    Only a strict decode without a control character (U+0000 included; a tweet has none) counts.
    """
    if b"\x00" not in raw:
        return None
    candidates = []
    if len(raw) % 4 == 0:
        candidates += [("utf-32-le", not any(raw[3::4])), ("utf-32-be", not any(raw[0::4]))]
    if len(raw) % 2 == 0:
        even, odd = raw[0::2].count(0), raw[1::2].count(0)
        candidates += [("utf-16-le", odd > even), ("utf-16-be", even > odd)]
    for codec, fits in candidates:
        if fits:
            try:
                text = raw.decode(codec)
            except UnicodeDecodeError:
                continue
            if not CONTROL_CHARACTER.search(text):
                return text, f"{codec}-no-bom"
    return None


def is_fallback(how: str) -> bool:
    """Whether a text decoded as ``how`` was guessed or changed rather than read as it is: read as cp1252,
    as UTF-16 or UTF-32 without a byte-order mark, with replaced characters, or cut at ``MAX_TEXT_BYTES``.
    The cache manifest lists every such text (``text_fallbacks``)."""
    return how == "cp1252" or how.endswith(("-replaced", "-no-bom", TRUNCATED))


def strict_decode(raw: bytes, codec: str, complete: bool = True) -> str:
    """``raw.decode(codec)``; with ``complete=False`` (bytes cut from a longer file) a character the cut
    split at the end is left out instead of failing the codec."""
    return codecs.getincrementaldecoder(codec)().decode(raw, final=complete)


def without_lone_surrogates(text: str) -> tuple[str, int]:
    """``text`` with every unpaired UTF-16 surrogate (U+D800-U+DFFF: JSON's "\\ud83d", half an emoji)
    replaced by U+FFFD, and how many were: no codec encodes one, so the tokenizer failed on it and a
    whole in-process batch with it (issue 33). A pair written as two code points becomes its character."""
    if not LONE_SURROGATE.search(text):
        return text, 0
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return joined, len(LONE_SURROGATE.findall(text)) - 2 * (len(text) - len(joined))


def decode_text(raw: bytes, encoding: str = "auto", complete: bool = True) -> tuple[str, str]:
    """Decode tweet bytes; returns (text, how) where ``how`` names the codec that was used.

    ``auto``: the codec a byte-order mark names (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE), checked per file
    before anything else (UTF-16 text is valid GB18030 and cp1252 bytes, read as mojibake); else
    UTF-32 or UTF-16 told by their NUL bytes (``decode_without_bom``); else
    UTF-8; else GB18030, the course archive's other encoding, unless the
    result looks like Latin-1 read as GB18030 (``implausible_gb18030``); else cp1252; else UTF-8 with
    U+FFFD for the bytes no codec took. Any other ``encoding`` is that codec alone. ``how`` ends in
    ``-replaced`` when characters were replaced: those texts are counted and reported by featurize.
    ``complete=False``: ``raw`` was cut from a longer file, and may end inside a character.
    """
    if encoding != "auto":
        try:
            return strict_decode(raw, encoding, complete), encoding
        except UnicodeDecodeError:
            return raw.decode(encoding, errors="replace"), f"{encoding}-replaced"
    if (by_bom := decode_by_bom(raw) or decode_without_bom(raw)) is not None:
        return by_bom
    try:
        return strict_decode(raw, "utf-8", complete), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = strict_decode(raw, "gb18030", complete)
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

    Hashtags, emoji and every script are kept: there is no ASCII filter. Unpaired surrogates become
    U+FFFD (``without_lone_surrogates``; the readers count them where the text comes in).
    """
    tokens = _tweet_tokenizer().tokenize(without_lone_surrogates(text[:TOKENIZED_CHARS])[0])
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


def decode_file(path: Path, encoding: str = "auto") -> tuple[str, str]:
    """``decode_text`` of the file ``path``; refuses a text that holds NUL characters: bytes of UTF-16 or
    UTF-32 read with an 8-bit codec, or a binary file, never a tweet."""
    with path.open("rb") as file:
        raw = file.read(MAX_TEXT_BYTES + 1)
    truncated = len(raw) > MAX_TEXT_BYTES
    text, how = decode_text(raw[:MAX_TEXT_BYTES], encoding, complete=not truncated)
    how += TRUNCATED if truncated else ""
    if "\x00" in text:
        hint = ("set data.text_encoding to auto, or to the file's codec" if encoding != "auto" else
                "it is no UTF-8, UTF-16 or UTF-32 text msc recognises; save it as UTF-8, or set data.text_encoding to "
                "its codec")
        raise UserError(f"the text file '{path}' read as {how} holds NUL characters ({text.count(chr(0))}), so it was "
                        f"decoded wrongly: {hint}")
    return text, how


def read_tweet(path: Path, encoding: str = "auto") -> tuple[str, str]:
    """A sample's normalised text, as the backbone sees it, and the codec ``decode_text`` used."""
    text, how = decode_file(path, encoding)
    return normalize_tweet(text), how


def raw_post_text(sample: Sample, encoding: str = "auto") -> str | None:
    """A post's text as written, before normalisation: its inline text, or its text file decoded (None
    when the file is missing)."""
    if sample.text_path is None:
        return sample.text or ""
    return decode_file(sample.text_path, encoding)[0] if sample.text_path.is_file() else None


def read_post_text(sample: Sample, encoding: str = "auto") -> tuple[str, str]:
    """``read_tweet`` of a post's text file, or its inline text (a table's ``text``) normalised alike;
    the codec is "inline" then."""
    if sample.text_path is None:
        text, replaced = without_lone_surrogates(sample.text or "")
        return normalize_tweet(text), "inline-replaced" if replaced else "inline"
    return read_tweet(sample.text_path, encoding)
