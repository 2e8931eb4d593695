"""``python -m src.docs_reference``: writes the configuration reference (docs/reference/configuration.md)
from the typed config, so that every key's type, default and comment has one source, the dataclasses."""

from __future__ import annotations

import argparse
from pathlib import Path

from msc.core.errors import cli
from msc.core.files import atomic_write_text, check_output_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the configuration reference page from the config's "
                                     "dataclasses (their fields, types, defaults and comments).")
    parser.add_argument("--out", type=Path, default=Path("docs/reference/configuration.md"),
                        help="the page (default: %(default)s)")
    args = parser.parse_args(argv)
    check_output_file(args.out, "--out")
    from msc.config.reference import configuration_reference  # after parsing: it imports torch, via the model layer

    atomic_write_text(args.out, configuration_reference())
    print(f"wrote {args.out}")
    return 0


main = cli(main)

if __name__ == "__main__":
    raise SystemExit(main())
