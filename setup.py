"""Build script: cythonize pyx/*.pyx into private extension modules fastconv/_ext/*.

One build runs on every CPU of its architecture. The modules themselves are
compiled for the architecture's baseline (x86-64: SSE2); the register kernels
(pyx/_kern.c) are compiled once per instruction-set level, each object with its
own target flags (x86-64: baseline, avx2 = -mavx2 -mfma, avx512 = AVX-512
F/BW/DQ/VL), and linked into the modules that call them (_direct, _winograd),
which pick the CPU's highest level at import (fastconv/_cpu.py;
FASTCONV_CPU=baseline|avx2|avx512 caps it). Extensions and level objects are
compiled in parallel.

Environment switches (read at build time):

FASTCONV_DEBUG=1     bounds checking and wraparound on, -O0 -g (for the test suite).
FASTCONV_NO_OPENMP=1 build serial even where the compiler supports OpenMP.
FASTCONV_JOBS=N      parallel compile jobs (default: the CPUs this process may use).
FASTCONV_MODULES=a,b  build only these modules (developer convenience, e.g.
                     ``FASTCONV_MODULES=_fft python setup.py build_ext --inplace``).
"""
import glob
import os
import platform
import shutil
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("FASTCONV_DEBUG", "0") == "1"
NO_OPENMP = os.environ.get("FASTCONV_NO_OPENMP", "0") == "1"

MODULES = ["_direct", "_im2col", "_fft", "_winograd"]
if os.environ.get("FASTCONV_MODULES"):
    MODULES = [m.strip() for m in os.environ["FASTCONV_MODULES"].split(",") if m.strip()]


def _compiler_accepts(flags, link_flags=(), code=None):
    """Compile (and link) a tiny C program with ``flags``; True if it works."""
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    code = code or "int main(void) { return 0; }\n"
    cc = new_compiler()
    customize_compiler(cc)
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        objs = cc.compile([src], output_dir=tmp, extra_postargs=list(flags))
        cc.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=list(link_flags))
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """
)


# Instruction-set levels of the register kernels: (id, name, target flags). A level
# whose flags the compiler refuses is left out (its kernels are then not offered).
X86_LEVELS = [
    (0, "baseline", []),
    (1, "avx2", ["-mavx2", "-mfma"]),
    (2, "avx512", ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma"]),
]
KERNEL_SOURCE = os.path.join("pyx", "_kern.c")
KERNEL_USERS = {"fastconv._ext._direct", "fastconv._ext._winograd"}
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def _jobs():
    if os.environ.get("FASTCONV_JOBS"):
        return max(1, int(os.environ["FASTCONV_JOBS"]))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class BuildExt(build_ext):
    """Decide compile flags once the real compiler is known; compile the kernel
    levels, then the extensions, in parallel."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = _jobs()

    def _levels(self, is_msvc):
        # GCC/Clang vector extensions are what the level-specific tiles are
        # written in; elsewhere only the portable loops are built.
        if is_msvc or not X86:
            return [(0, "baseline", [])]
        return [lv for lv in X86_LEVELS if not lv[2] or _compiler_accepts(lv[2])]

    def _compile_levels(self, levels, cflags):
        """One object of pyx/_kern.c per level, compiled concurrently."""
        from concurrent.futures import ThreadPoolExecutor

        def one(level):
            lid, name, flags = level
            out = os.path.join(self.build_temp, "kern_" + name)
            return self.compiler.compile(
                [KERNEL_SOURCE], output_dir=out, include_dirs=["pyx"],
                macros=[("FC_LEVEL_ID", str(lid)), ("FC_LEVEL_NAME", name)],
                extra_postargs=cflags + flags, debug=DEBUG)

        with ThreadPoolExecutor(max(1, min(len(levels), self.parallel or 1))) as pool:
            return [o for objs in pool.map(one, levels) for o in objs]

    def build_extensions(self):
        is_msvc = self.compiler.compiler_type == "msvc"
        cflags, lflags = [], []
        if is_msvc:
            cflags += ["/O2"]
            omp_c, omp_l = ["/openmp"], []
        else:
            cflags += ["-O0", "-g"] if DEBUG else ["-O3"]
            cflags += ["-Wno-unused-function", "-Wno-unreachable-code"]
            omp_c, omp_l = ["-fopenmp"], ["-fopenmp"]
        use_openmp = not NO_OPENMP and _compiler_accepts(omp_c, omp_l, OPENMP_PROBE)
        if use_openmp:
            cflags += omp_c
            lflags += omp_l
        elif not NO_OPENMP:
            warnings.warn("fastconv: the compiler does not support OpenMP; building serial kernels.",
                          stacklevel=1)
        levels = self._levels(is_msvc)
        users = [e for e in self.extensions if e.name in KERNEL_USERS]
        objects = self._compile_levels(levels, cflags) if users else []
        have = [("FC_HAVE_" + name.upper(), "1") for _, name, _ in levels if name != "baseline"]
        for ext in self.extensions:
            ext.extra_compile_args = cflags + list(ext.extra_compile_args or [])
            ext.extra_link_args = lflags + list(ext.extra_link_args or [])
            if ext in users:
                ext.extra_objects = list(ext.extra_objects or []) + objects
                ext.define_macros = list(ext.define_macros or []) + have
        super().build_extensions()


extensions = [
    Extension(
        f"fastconv._ext.{name}",
        [os.path.join("pyx", f"{name}.pyx")],
        include_dirs=[np.get_include(), "pyx"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # a changed header or kernel level relinks the module
        depends=sorted(glob.glob(os.path.join("pyx", "*.h"))) + [KERNEL_SOURCE],
    )
    for name in MODULES
    if os.path.exists(os.path.join("pyx", f"{name}.pyx"))
]

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "cdivision": not DEBUG,
    "initializedcheck": DEBUG,
    "nonecheck": DEBUG,
    "embedsignature": True,
}

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives, include_path=["pyx"]),
    cmdclass={"build_ext": BuildExt},
)
