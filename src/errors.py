"""User-facing failures: one sentence on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import sys
from typing import Callable


class UserError(Exception):
    """Something the user can fix: bad data, bad params, a missing backbone or model.

    The message says what is wrong, where (file, line, guid or key) and how to fix it.
    """


EXIT_USER_ERROR = 2


def cli(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a module's ``main(argv)`` so a UserError becomes a message and exit status 2."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv) or 0
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
