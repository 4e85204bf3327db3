"""The instruction-set level the register kernels run at.

One build holds the direct and Winograd register kernels compiled for every
level of its architecture (x86-64: ``baseline`` = SSE2, ``avx2`` = AVX2 + FMA,
``avx512`` = AVX-512F/BW/DQ/VL; see ``setup.py``). At import the highest level
the CPU supports is selected; the environment variable ``FASTCONV_CPU`` caps it
(as ``NPY_DISABLE_CPU_FEATURES``, ``OPENBLAS_CORETYPE`` and
``ONEDNN_MAX_CPU_ISA`` do for NumPy, OpenBLAS and oneDNN). A level the CPU
cannot run, or one this build lacks, is refused with a ``RuntimeWarning`` and
the best available level is used instead: never an illegal instruction.

Everything that depends on the level (the cost model's rates, the calibration
file, explain and the bench reports) reads :func:`level`.
"""
from __future__ import annotations

import os
import platform
import warnings

from ._ext import _direct, _winograd

LEVELS = _direct.LEVELS          # ("baseline", "avx2", "avx512"), in order
ENV = "FASTCONV_CPU"


def compiled_levels() -> tuple[str, ...]:
    """Levels this build holds kernels for."""
    return _direct.compiled_levels()


def cpu_level() -> str:
    """The highest level this CPU supports (whether compiled or not)."""
    return _direct.cpu_level()


def available_levels() -> tuple[str, ...]:
    """Levels that are both compiled and supported by this CPU."""
    top = LEVELS.index(cpu_level())
    return tuple(lv for lv in compiled_levels() if LEVELS.index(lv) <= top)


_level = "baseline"   # the selected level (set_level keeps it; read on hot paths)


def level() -> str:
    """The level the kernels run at now."""
    return _level


def set_level(name: str) -> None:
    """Run the register kernels at level ``name`` (one of :func:`available_levels`).

    For tests and benchmarks that compare levels in one process; a user caps
    the level with ``FASTCONV_CPU`` before the import. Raises ``ValueError`` for
    a level that is not available here.
    """
    if name not in available_levels():
        raise ValueError(f"instruction-set level {name!r} is not available: this build has "
                         f"{', '.join(compiled_levels())} and this CPU supports up to "
                         f"{cpu_level()}")
    global _level
    idx = LEVELS.index(name)
    _direct.select_level(idx)
    _winograd.select_level(idx)
    _level = name
    _notify()


_listeners = []


def on_level_change(fn) -> None:
    """Call ``fn()`` after every change of level (the dispatcher forgets its decisions)."""
    _listeners.append(fn)


def _notify():
    for fn in _listeners:
        fn()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "cpu model", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _initial_level(requested: str | None) -> str:
    """The level to start at for ``FASTCONV_CPU=requested`` (None: not set)."""
    avail = available_levels()
    best = avail[-1]
    if requested is None or not requested.strip():
        return best
    req = requested.strip().lower()
    if req not in LEVELS:
        warnings.warn(f"{ENV}={requested!r} is not a level ({', '.join(LEVELS)}); "
                      f"using {best}", RuntimeWarning, stacklevel=3)
        return best
    if req not in avail:
        why = (f"this CPU supports up to {cpu_level()}" if LEVELS.index(req) > LEVELS.index(cpu_level())
               else f"this build has only {', '.join(compiled_levels())}")
        warnings.warn(f"{ENV}={req} is not available ({why}); using {best}",
                      RuntimeWarning, stacklevel=3)
        return best
    return req


set_level(_initial_level(os.environ.get(ENV)))
