"""The compiled kernels (built from ``pyx/``).

Importing fastconv from a source checkout that was never built (for example
``python -c "import fastconv"`` run in the repository folder, which puts the
uncompiled ``fastconv/`` first on ``sys.path``) would otherwise fail with
"cannot import name '_direct' from 'fastconv._ext'". Say what happened and
how to fix it, as NumPy does for its source tree.
"""
import importlib.util as _util
import os as _os

_MODULES = ("_direct", "_im2col", "_fft", "_winograd")
_missing = [m for m in _MODULES if _util.find_spec(f"{__name__}.{m}") is None]
if _missing:
    _src = _os.path.dirname(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))
    raise ImportError(
        f"fastconv's compiled kernels ({', '.join(_missing)}) are missing from "
        f"{_os.path.dirname(_os.path.abspath(__file__))}: this is the uncompiled source tree. "
        f"Install fastconv (`pip install .` in {_src}, then run Python from another folder), "
        "or build the kernels in place with `python setup.py build_ext --inplace`."
    )
