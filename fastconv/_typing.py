"""Type aliases of the public API's annotations.

They say what the docstrings say, for type checkers and editors: a per-axis
argument is one int or one per spatial axis, padding may also be ``(before,
after)`` pairs or a word, and a strategy is "auto" or a registered name (a
``str``: strategies are looked up by name at run time).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from numpy.typing import ArrayLike, DTypeLike

__all__ = ["ArrayLike", "DTypeLike", "Shape", "PerAxis", "Padding", "TransposePadding",
           "PaddingMode", "Op", "Needs"]

Shape = tuple[int, ...]
PerAxis = int | tuple[int, ...]
Padding = int | tuple[int, ...] | tuple[tuple[int, int], ...] | Literal["valid", "same", "full"]
TransposePadding = int | tuple[int, ...] | tuple[tuple[int, int], ...]
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
Op = Literal["forward", "grad_input", "grad_weight"]
Needs = str | Iterable[str]
