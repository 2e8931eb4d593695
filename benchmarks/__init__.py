"""The sections of ``python -m src.benchmark`` (src/benchmark.py says what each measures).

Each section module has one ``bench_<section>(args, work) -> dict`` that the entry point calls and writes to
``<work-dir>/<section>.json``; ``common`` holds what several sections share. This package lies
outside the ``msc`` library, so it may import any of its layers, and the test helpers that start
servers and measure processes (tests/helpers.py).
"""
