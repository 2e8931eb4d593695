"""The sections of ``python -m src.benchmark`` (src/benchmark.py says what each measures).

Each section module has one ``bench_<section>(args, work) -> dict`` that the entry point calls and writes to
``<work-dir>/<section>.json``; ``common`` holds what several sections share, ``processes`` how they
start servers and measure processes (the tests that serve a model use it too). This package lies
outside the ``msc`` library, so it may import any of its layers; it never imports the tests.
"""
