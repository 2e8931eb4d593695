"""NLTK's TweetTokenizer (``preserve_case=True``, its defaults otherwise) with Python's ``re`` alone, for the
exported bundle's script, which must run without nltk (msc/model/bundle_predict.py).

The expressions are NLTK's (nltk/tokenize/casual.py, Apache License 2.0), unchanged but for the one
that needs the ``regex`` module: runs of 4 or more of one character that is no letter or digit,
``[^\\p{L}\\p{N}]``, are ``[\\W_]`` here. HTML entities are decoded by ``html.unescape``.
tests/unit/model/test_onnx_export.py checks the tokens against msc.data.text.normalize_tweet's.
"""

from __future__ import annotations

import html
import re

EMOTICONS = r"""
    (?:
      [<>]?
      [:;=8]                     # eyes
      [\-o\*\']?                 # optional nose
      [\)\]\(\[dDpP/\:\}\{@\|\\] # mouth
      |
      [\)\]\(\[dDpP/\:\}\{@\|\\] # mouth
      [\-o\*\']?                 # optional nose
      [:;=8]                     # eyes
      [<>]?
      |
      </?3                       # heart
    )"""

URLS = r"""
  (?:
  https?:
    (?:
      /{1,3}
      |
      [a-z0-9%]
    )
    |
    [a-z0-9.\-]{1,255}[.]
    (?:[a-z]{2,13})
    /
  )
  (?:
    [^\s()<>{}\[\]]+
    |
    \([^\s()]{0,255}?\([^\s()]{1,255}\)[^\s()]{0,255}?\)
    |
    \([^\s]{1,255}?\)
  )+
  (?:
    \([^\s()]{0,255}?\([^\s()]{1,255}\)[^\s()]{0,255}?\)
    |
    \([^\s]{1,255}?\)
    |
    [^\s`!()\[\]{};:'".,<>?«»“”‘’]
  )
  |
  (?:
    (?<!@)
    [a-z0-9]+
    (?:[.\-][a-z0-9]+){0,126}
    [.]
    (?:[a-z]{2,13})
    \b
    /?
    (?!@)
  )
"""

FLAGS = r"""
  (?:
    [\U0001F1E6-\U0001F1FF]{2}
    |
    \U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006e\U000E0067\U000E007F
    |
    \U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F
    |
    \U0001F3F4\U000E0067\U000E0062\U000E0077\U000E006C\U000E0073\U000E007F
  )
"""

PHONE = r"""
    (?:
      (?:
        \+?[01]
        [ *\-.\)]*
      )?
      (?:
        [\(]?
        \d{3}
        [ *\-.\)]*
      )?
      \d{3}
      [ *\-.\)]*
      \d{4}
    )"""

REGEXPS = (
    URLS,
    PHONE,
    EMOTICONS,
    r"""<[^>\s]+>""",
    r"""[\-]+>|<[\-]+""",
    r"""(?:@[\w_]+)""",
    r"""(?:\#+[\w_]+[\w\'_\-]*[\w_]+)""",
    r"""[\w.+-]{1,64}@[\w-]{1,63}\.(?:[\w-]\.?){1,251}[\w-]""",
    r"""\S(?:
        [\U0001f3fb-\U0001f3ff]?(?:\u200d\S[\U0001f3fb-\U0001f3ff]?)+
        |
        [\U0001f3fb-\U0001f3ff]
    )""",
    FLAGS,
    r"""
    (?:[^\W\d_](?:[^\W\d_]|['\-_])+[^\W\d_])
    |
    (?:[+\-]?\d+[,/.:-]\d+[+\-]?)
    |
    (?:[\w_]+)
    |
    (?:\.(?:[^\S\r\n]*\.){1,})
    |
    (?:\S)
    """,
)
WORD_RE = re.compile(f"({'|'.join(REGEXPS)})", re.VERBOSE | re.I | re.UNICODE)
HANG_RE = re.compile(r"([\W_])\1{3,}")


def tweet_tokens(text: str) -> list[str]:
    """The tokens TweetTokenizer(preserve_case=True).tokenize(text) gives."""
    return WORD_RE.findall(HANG_RE.sub(r"\1\1\1", html.unescape(text)))
