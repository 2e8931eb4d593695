"""The stage commands users type: ``python -m src.<stage>``. Each is a thin entry point (arguments,
config, one call into the ``msc`` library in ``src/msc/``, outputs written where params.yaml's ``paths``
or an argument says). import-linter checks them as the layer above ``msc`` (pyproject.toml)."""

import importlib.util
import sys
from pathlib import Path

_LIBRARY = Path(__file__).resolve().parent / "msc"
if "msc" not in sys.modules:
    # The commands run the library beside them, also where the venv was installed from another
    # checkout (DVC's temporary experiment copies, a copied project): `pip install -e` points msc
    # at the checkout it was run in, which DVC neither hashes nor runs here.
    _spec = importlib.util.spec_from_file_location("msc", _LIBRARY / "__init__.py",
                                                   submodule_search_locations=[str(_LIBRARY)])
    sys.modules["msc"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["msc"])
