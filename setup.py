"""Build script: cythonize pyx/*.pyx into private extension modules fastconv/_ext/*.

Environment switches (read at build time):

FASTCONV_DEBUG=1     bounds checking and wraparound on, -O0 -g (for the test suite).
FASTCONV_PORTABLE=1  do not compile for the host CPU (no -march=native): a wheel
                     that runs on any x86-64 / aarch64 machine.
FASTCONV_NO_OPENMP=1 build serial even where the compiler supports OpenMP.
FASTCONV_MODULES=a,b  build only these modules (developer convenience, e.g.
                     ``FASTCONV_MODULES=_fft python setup.py build_ext --inplace``).
"""
import os
import shutil
import sys
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("FASTCONV_DEBUG", "0") == "1"
PORTABLE = os.environ.get("FASTCONV_PORTABLE", "0") == "1"
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


class BuildExt(build_ext):
    """Decide compile flags once the real compiler is known."""

    def build_extensions(self):
        is_msvc = self.compiler.compiler_type == "msvc"
        cflags, lflags = [], []
        if is_msvc:
            cflags += ["/O2"]
            omp_c, omp_l = ["/openmp"], []
        else:
            cflags += ["-O0", "-g"] if DEBUG else ["-O3"]
            cflags += ["-Wno-unused-function", "-Wno-unreachable-code"]
            if not PORTABLE and _compiler_accepts(["-march=native"]):
                cflags.append("-march=native")
            omp_c, omp_l = ["-fopenmp"], ["-fopenmp"]
        use_openmp = not NO_OPENMP and _compiler_accepts(omp_c, omp_l, OPENMP_PROBE)
        if use_openmp:
            cflags += omp_c
            lflags += omp_l
        elif not NO_OPENMP:
            warnings.warn("fastconv: the compiler does not support OpenMP; building serial kernels.")
        for ext in self.extensions:
            ext.extra_compile_args = cflags + list(ext.extra_compile_args or [])
            ext.extra_link_args = lflags + list(ext.extra_link_args or [])
        super().build_extensions()


extensions = [
    Extension(
        f"fastconv._ext.{name}",
        [os.path.join("pyx", f"{name}.pyx")],
        include_dirs=[np.get_include(), "pyx"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
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
