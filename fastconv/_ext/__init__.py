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


def _libgomp_loaded():
    """Whether a GNU OpenMP runtime is already mapped into this process (Linux)."""
    try:
        with open("/proc/self/maps") as f:
            return any("libgomp" in line for line in f)
    except OSError:
        return False


# GNU OpenMP's idle threads spin, waiting for the next parallel region, for about
# 300,000 rounds before they sleep (milliseconds on recent CPUs). fastconv's
# OpenMP regions are often followed by other threads (OpenBLAS's, FFT's
# pipelines, PyTorch's), whose cores the spinning team then holds. A short spin
# keeps back-to-back regions fast and gives the cores back soon. libgomp reads
# the setting once, when it loads: so it is put in the environment for the
# import of the first kernel module (which loads libgomp) and taken out again,
# so that child processes start from the user's environment. A user's
# GOMP_SPINCOUNT or OMP_WAIT_POLICY is left as it is; a libgomp that another
# module loaded earlier (PyTorch bundles one) keeps what it read, and fastconv's
# kernels share it. SPIN says which of the three applies.
SPINCOUNT = "10000"
if "GOMP_SPINCOUNT" in _os.environ or "OMP_WAIT_POLICY" in _os.environ:
    SPIN = "user"
elif _libgomp_loaded():
    SPIN = "loaded"
else:
    SPIN = "set"
    _os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    try:
        from . import _direct  # noqa: F401  (loads libgomp, which reads the variable)
    finally:
        del _os.environ["GOMP_SPINCOUNT"]
