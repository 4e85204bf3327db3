"""Formulas and helpers written once: every caller uses the one definition.

A second copy of the output-size formula (or of the error-message helpers) can
drift from the first without any test noticing, so the sources are searched for
copies. Runs on the repository's sources, next to this folder.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for folder in ("fastconv", "pyx") for ext in ("py", "pyx", "pxd")
                 for p in (ROOT / folder).rglob(f"*.{ext}"))

# `... d * (k - 1) - 1) // s + 1`: the convolution's output size
CONV_SIZE = re.compile(r"\*\s*\(\w+(\[[^\]]*\])?\s*-\s*1\)\s*-\s*1\)\s*//")
# `(i - 1) * s ... d * (k - 1)`: the transposed convolution's output size
TRANSPOSE_SIZE = re.compile(r"\(\w+(\[[^\]]*\])?\s*-\s*1\)\s*\*\s*\w+.*\*\s*\(\w+\s*-\s*1\)")


def _hits(pattern):
    out = []
    for path in SOURCES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if pattern.search(code) and "``" not in code:  # docstrings quote the formula
                out.append(f"{path.relative_to(ROOT)}:{n}")
    return out


pytestmark = pytest.mark.skipif(not (ROOT / "pyx").is_dir(), reason="needs the source tree")


@pytest.mark.parametrize("pattern, where", [
    (CONV_SIZE, "fastconv/_spec.py"),
    (TRANSPOSE_SIZE, "fastconv/_spec.py"),
    (re.compile(r"^def _show\b"), "fastconv/_spec.py"),
    (re.compile(r"^def _(is_)?int\(v\)"), "fastconv/_spec.py"),  # a predicate
    (re.compile(r"^def _?available_memory\b"), "fastconv/_resources.py"),
    (re.compile(r"^def _cgroup_cpu_quota\b"), "fastconv/_resources.py"),
], ids=["conv_output_size", "conv_transpose_output_size", "_show", "_is_int",
        "_available_memory", "_cgroup_cpu_quota"])
def test_defined_once(pattern, where):
    hits = _hits(pattern)
    assert len(hits) == 1 and hits[0].startswith(where + ":"), hits


def test_the_formulas_agree_with_the_spec():
    from fastconv._spec import conv_output_size, conv_transpose_output_size, make_spec

    spec = make_spec((2, 3, 17), (4, 3, 5), stride=3, padding=[(2, 1)], dilation=2)
    assert spec.out_spatial == (conv_output_size(17, 5, 3, 2, 1, 2),)
    # the transposed convolution maps that output size back to the input's, up to
    # the stride's remainder, which output_padding restores
    o = spec.out_spatial[0]
    back = conv_transpose_output_size(o, 5, 3, 2, 1, 0, 2)
    assert back <= 17 < back + 3
    assert conv_transpose_output_size(o, 5, 3, 2, 1, 17 - back, 2) == 17


def test_winograd_buffers_use_its_pad_constant():
    # the scratch sizes must add the same padding as the position strides use
    src = (ROOT / "pyx" / "_winograd.pyx").read_text()
    assert len(re.findall(r"^\s*PAD = \d+", src, re.M)) == 1
    assert not re.search(r"\+ 16\)", src)
