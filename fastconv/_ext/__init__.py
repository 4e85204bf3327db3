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

# GNU OpenMP's threads spin, waiting for the next parallel region, for about
# 300,000 rounds before they sleep (milliseconds on recent CPUs). fastconv's
# OpenMP regions are often followed by other threads (OpenBLAS's, FFT's
# pipelines, PyTorch's), whose cores the spinning team then holds. A short spin
# keeps back-to-back regions fast and gives the cores back soon. libgomp reads
# the setting once, when it loads (with the first kernel module below), so it
# is set here; a user's GOMP_SPINCOUNT or OMP_WAIT_POLICY is left as it is, and
# a libgomp that another module loaded earlier keeps what it read.
SPINCOUNT = "10000"
SPIN_SET = "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ
if SPIN_SET:
    _os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
_missing = [m for m in _MODULES if _util.find_spec(f"{__name__}.{m}") is None]
if _missing:
    _src = _os.path.dirname(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))
    raise ImportError(
        f"fastconv's compiled kernels ({', '.join(_missing)}) are missing from "
        f"{_os.path.dirname(_os.path.abspath(__file__))}: this is the uncompiled source tree. "
        f"Install fastconv (`pip install .` in {_src}, then run Python from another folder), "
        "or build the kernels in place with `python setup.py build_ext --inplace`."
    )
