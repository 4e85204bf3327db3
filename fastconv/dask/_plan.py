"""Index arithmetic of spatially chunked convolution (pure Python, no Dask).

One spatial axis of a convolution: input size ``I``, stride ``s``, padding
``pb`` before, kernel extent ``span = d*(K-1) + 1`` (``d`` the dilation),
output size ``O``. Output ``o`` reads the input rows ``[o*s - pb, o*s - pb + span)``
(negative rows and rows ``>= I`` are the zero padding). Everything here works
on one axis; the Dask graph takes the product over axes.

A block of outputs ``[o0, o1)`` is computed by the ordinary NumPy API on a
*local problem*: the input rows ``[A, B)`` it needs, clipped to the image, with
local padding ``(pbl, pal)`` standing for exactly the rows of the window union
that fall outside the image, so the block sees zeros only where the padding is.
"""
from __future__ import annotations

import bisect
import itertools

__all__ = ["forward_window", "grad_input_window", "output_bounds", "input_bounds", "pieces"]


def _ceil_div(a, b):
    return -((-a) // b)


def forward_window(o0, o1, size, stride, pad_before, span):
    """Input rows the outputs ``[o0, o1)`` need, and the local padding.

    Returns
    -------
    (A, B, pbl, pal) or None
        Rows ``[A, B)`` of the input (``0 <= A < B <= size``); padding ``pbl``
        before and ``pal`` after them. The local problem
        ``(B - A + pbl + pal - span) // stride + 1 == o1 - o0`` reproduces the
        outputs exactly. None when every window lies in the padding (the block
        is zero, plus the bias).
    """
    lo = o0 * stride - pad_before
    hi = (o1 - 1) * stride - pad_before + span
    a, b = max(lo, 0), min(hi, size)
    if a >= b:
        return None
    return a, b, a - lo, hi - b


def grad_input_window(i0, i1, out_size, stride, pad_before, span):
    """Outputs whose windows touch the input rows ``[i0, i1)``, and the local problem.

    Returns
    -------
    (oa, ob, A, B, pbl, pal) or None
        Outputs ``[oa, ob)`` (the grad_output rows a grad_input block needs);
        the local problem has input rows ``[A, B)`` (inside ``[i0, i1)``) with
        padding ``(pbl, pal)``; rows of ``[i0, i1)`` outside ``[A, B)`` are
        touched by no window and their gradient is zero. None when no output
        touches the block at all (e.g. rows a strided "valid" layer skips).
    """
    oa = max(0, _ceil_div(i0 + pad_before - span + 1, stride))
    ob = min(out_size - 1, (i1 - 1 + pad_before) // stride)
    if oa > ob:
        return None
    lo = oa * stride - pad_before
    hi = ob * stride - pad_before + span
    a, b = max(i0, lo), min(i1, hi)
    return oa, ob + 1, a, b, a - lo, hi - b


def _centre(stride, pad_before, span):
    # Output o's window is centred on input row o*stride + offset; with "same"
    # padding the offset is 0, and output blocks line up with input chunks.
    return (span - 1) // 2 - pad_before


def _chunks_from_bounds(bounds, total):
    inner = sorted({min(max(b, 0), total) for b in bounds} - {0, total})
    edges = [0] + inner + [total]
    return tuple(b - a for a, b in zip(edges, edges[1:]))


def output_bounds(in_chunks, out_size, stride, pad_before, span):
    """Output chunks along one axis: output ``o`` belongs to the input chunk
    holding its window's centre (so halos are balanced and blocks sit where
    their data is); the first and last blocks absorb what the padding adds or
    removes. Empty blocks are dropped."""
    c = _centre(stride, pad_before, span)
    starts = itertools.accumulate(in_chunks[:-1])
    return _chunks_from_bounds([_ceil_div(st - c, stride) for st in starts], out_size)


def input_bounds(out_chunks, in_size, stride, pad_before, span):
    """The inverse of :func:`output_bounds`: grad_input chunks when only the
    grad_output's chunks are known."""
    c = _centre(stride, pad_before, span)
    starts = itertools.accumulate(out_chunks[:-1])
    return _chunks_from_bounds([o * stride + c for o in starts], in_size)


def pieces(chunks, lo, hi):
    """Which chunks of an axis hold rows ``[lo, hi)``, and which rows of each.

    Returns
    -------
    list of (j, slice, whole)
        Chunk index, the rows of chunk ``j`` inside ``[lo, hi)``, and whether
        that is the whole chunk (then no slicing task is needed).
    """
    offsets = [0, *itertools.accumulate(chunks)]
    j = max(0, bisect.bisect_right(offsets, lo) - 1)
    out = []
    while j < len(chunks) and offsets[j] < hi:
        a, b = max(lo, offsets[j]), min(hi, offsets[j + 1])
        if a < b:
            out.append((j, slice(a - offsets[j], b - offsets[j]),
                        a == offsets[j] and b == offsets[j + 1]))
        j += 1
    return out
