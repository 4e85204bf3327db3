"""Kernel spectra by direct DFT: the FFT strategy's kernel-side transforms.

A kernel of ``Q`` taps (dilation ``e``) inside a transform of length ``F``
is almost all zeros when ``Q`` is small next to ``F``; transforming every
zero-padded plane with pocketfft is then the most expensive part of a layer
with many channels (``CO * CIG`` planes against ``N * C`` for the input).
Its spectrum along one axis is instead the product with an ``(M, Q)`` DFT
matrix (``M = F`` or ``F//2 + 1``): one batched complex GEMM per axis over
all ``CO * CIG`` lanes (``pyx/_fft.pyx: dft_axis``). The same holds backwards
for grad_weight: only ``Q`` taps of the inverse transform of the summed
spectrum are needed.

Both functions produce exactly what the transform path produces (same
layout, same normalization as ``scipy.fft.rfftn`` / ``irfftn``), so the
caller picks per call the cheaper of the two (:func:`dft_cmacs` against the
transform's cost in :mod:`fft_plan`).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .._ext import _fft

USE_SYM = True


def _steps(F, axes, Q, inverse):
    """[(axis, M, Q)] for the axes the DFT runs along, in execution order.

    Forward: the halved (real) axis first, as it expands least, then the
    others. Inverse: the complex axes first, the real axis last (as irfftn).
    """
    last = axes[-1]
    out = []
    for i in ([last] + [a for a in reversed(axes) if a != last]):
        M = F[i] // 2 + 1 if i == last else F[i]
        if F[i] > 1:
            out.append((i, M, Q[i]))
    return out[::-1] if inverse else out


def dft_cmacs(F, axes, Q, inverse=False):
    """Complex multiply-adds per lane of the kernel DFT (for the cost model)."""
    last = axes[-1]
    shape = [F[i] // 2 + 1 if i == last else F[i] for i in range(3)] if inverse else list(Q)
    total = 0
    for i, M, q in _steps(F, axes, Q, inverse):
        shape[i] = q if inverse else M
        total += math.prod(shape) * (M if inverse else q)
    return total


def dft_bytes(F, axes, Q, lanes, itemsize, inverse=False, cached=False, threads=1):
    """Bytes :func:`kernel_spectrum` (or :func:`kernel_taps`) allocates beyond
    its input and its result: the two stages alive around each step (for the
    inverse, not counting the input spectrum), the real copy of the kernel and
    the DFT matrices with their float64 construction temporaries (an
    overestimate once a matrix is cached; ``cached=True`` leaves them out), on
    ``threads`` threads (each running task holds its own lanes)."""
    csz = 2 * itemsize
    last = axes[-1]
    shape = [F[i] // 2 + 1 if i == last else F[i] for i in range(3)] if inverse else list(Q)
    stages = [math.prod(shape)]
    mats = tmp = 0
    for i, M, q in _steps(F, axes, Q, inverse):
        shape[i] = q if inverse else M
        stages.append(math.prod(shape))
        # the cached matrix, and its construction temporaries (int64 index
        # products, the float64 and cast root tables)
        mats += M * q * csz
        tmp = max(tmp, M * q * 16 + F[i] * (16 + csz))
        if i != last and not inverse:
            # dft_axis_sym: cos/sin halves, and A, B of 256 lanes per running task
            mats += M * q * itemsize
            tmp = max(tmp, 4 * (F[i] // 2 + 1) * 256 * itemsize * threads)
    if inverse:
        stages[0] = 0                       # the caller's spectrum
    else:
        stages[-1] = 0                      # the result
    pair = max(a + b for a, b in zip(stages, stages[1:])) if len(stages) > 1 else 0
    return lanes * (pair * csz + math.prod(Q) * itemsize) + (0 if cached else mats + tmp)


@functools.lru_cache(maxsize=32)
def _matrix(F, i, M, q, e, last, inverse, cdt):
    """DFT matrix along axis ``i``: (M, q) forward, (q, M) inverse, read-only
    and cached. Entries come from a float64 table of the ``F`` roots of unity
    indexed by ``k*n mod F`` (int32), so building it needs only that table
    and the index array beside the result."""
    f = F[i]
    tw = np.exp((2j if inverse else -2j) * np.pi * np.arange(f) / f)
    if inverse:
        tw /= f
    tw = tw.astype(cdt)
    k = np.arange(M, dtype=np.int64)
    n = np.arange(q, dtype=np.int64) * e % f
    idx = (np.multiply.outer(n, k) if inverse else np.multiply.outer(k, n)) % f
    D = tw[idx.astype(np.int32)]
    del idx
    if inverse and i == last:
        # c2r: the bins 1..F/2-1 stand for their conjugate pair too
        c = np.full(M, 2.0, dtype=cdt)
        c[0] = 1.0
        if f % 2 == 0:
            c[-1] = 1.0
        D *= c[None, :]
    D.flags.writeable = False
    return D


def kernel_spectrum(w, F, axes, mshape, dil, n_threads):
    """Spectrum ``mshape + (CO, CIG)`` of the kernel ``w (CO, CIG, K0, K1, K2)``
    with its taps ``dil`` apart from the origin: ``rfftn`` of the packed
    kernel, computed as DFT-matrix products."""
    CO, CIG = w.shape[:2]
    Q = w.shape[2:]
    L = CO * CIG
    cdt = np.dtype(np.result_type(w.dtype, 1j))
    a = np.zeros(Q + (L,), dtype=cdt)
    a.real = w.reshape(L, -1).T.reshape(Q + (L,))
    shape = list(Q)
    for i, M, q in _steps(F, axes, Q, False):
        D = _matrix(F, i, M, q, dil[i], axes[-1], False, cdt)
        pre = math.prod(shape[:i])
        post = math.prod(shape[i + 1:]) * L
        shape[i] = M
        out = np.empty(tuple(shape) + (L,), dtype=cdt)
        if i != axes[-1] and USE_SYM:
            # a full axis: rows k and F-k are conjugate (half the multiplies)
            h = F[i] // 2 + 1
            Dh = D[:h]
            _fft.dft_axis_sym(a.reshape(pre, q, post).view(w.dtype),
                              np.ascontiguousarray(Dh.real), np.ascontiguousarray(Dh.imag),
                              out.reshape(pre, M, post).view(w.dtype), n_threads)
        else:
            _fft.dft_axis(a.reshape(pre, q, post).view(w.dtype), D.view(w.dtype),
                          out.reshape(pre, M, post).view(w.dtype), n_threads)
        a = out
    return a.reshape(tuple(mshape) + (CO, CIG))


def kernel_taps(GW, F, axes, Q, dil, dtype, n_threads):
    """Real kernel ``(CO, CIG) + Q``: taps ``dil`` apart of ``irfftn(GW)``
    (transform lengths ``F``) for a spectrum ``GW (mshape..., CO, CIG)``."""
    CO, CIG = GW.shape[3:]
    L = CO * CIG
    cdt = np.dtype(GW.dtype)
    shape = list(GW.shape[:3])
    a = GW
    for i, M, q in _steps(F, axes, Q, True):
        D = _matrix(F, i, M, q, dil[i], axes[-1], True, cdt)
        pre = math.prod(shape[:i])
        post = math.prod(shape[i + 1:]) * L
        shape[i] = q
        out = np.empty(tuple(shape) + (L,), dtype=cdt)
        _fft.dft_axis(np.ascontiguousarray(a).reshape(pre, M, post).view(dtype),
                      D.view(dtype), out.reshape(pre, q, post).view(dtype), n_threads)
        a = out
    r = a.reshape(math.prod(Q), L).real.T
    return np.ascontiguousarray(r, dtype=dtype).reshape((CO, CIG) + tuple(Q))
