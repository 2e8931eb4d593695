"""The stage commands users type: ``python -m src.<stage>``. Each is a thin entry point (arguments,
config, one call into the ``msc`` library in ``src/msc/``, outputs)."""
