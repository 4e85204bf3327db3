"""Winograd / Toom-Cook transform matrices for F(m, 3), derived exactly.

For the correlation ``y[i] = sum_k g[k] d[i + k]`` (i < m, k < r = 3) on a tile of
``alpha = m + r - 1`` inputs::

    y = A^T [ (G g) * (B^T d) ]

Derivation (Lavin & Gray 2016, section 4, by the transposition principle): the
linear convolution of g (r taps) with a length-m signal is evaluated at
``alpha - 1`` finite points ``a_i`` and at infinity, then interpolated. Its
transpose is the correlation above, with

* ``G[i]   = [1, a_i, a_i^2] / prod_{j != i} (a_i - a_j)``, row ``[0, 0, 1]`` at infinity;
* ``B^T[i]`` = coefficients (lowest degree first) of ``prod_{j != i} (x - a_j)``,
  at infinity those of ``prod_j (x - a_j)``;
* ``A^T[:, i] = [1, a_i, ..., a_i^(m-1)]``, at infinity ``[0, ..., 0, 1]``.

Points: F(2,3) 0, 1, -1; F(4,3) 0, +-1, +-2; F(6,3) 0, +-1, +-2, +-1/2 (the
small, symmetric points that keep the float error lowest). Everything is
computed in exact rationals, then rounded once to float64.
"""
from __future__ import annotations

from fractions import Fraction
from functools import cache

import numpy as np

POINTS = {
    2: (0, 1, -1),
    4: (0, 1, -1, 2, -2),
    6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)),
}
R = 3


def _poly_from_roots(roots):
    """Coefficients, lowest degree first, of prod (x - root)."""
    c = [Fraction(1)]
    for a in roots:
        nxt = [Fraction(0)] * (len(c) + 1)
        for k, v in enumerate(c):
            nxt[k + 1] += v
            nxt[k] -= a * v
        c = nxt
    return c


@cache
def exact(m):
    """(BT, G, AT) as lists of lists of Fractions for F(m, 3)."""
    if m == 1:  # trivial: a kernel axis of extent 1
        one = [[Fraction(1)]]
        return one, one, one
    pts = [Fraction(p) for p in POINTS[m]]
    alpha = m + R - 1
    assert len(pts) == alpha - 1
    BT, G, AT = [], [], [[Fraction(0)] * alpha for _ in range(m)]
    for i, a in enumerate(pts):
        others = pts[:i] + pts[i + 1:]
        d = Fraction(1)
        for b in others:
            d *= a - b
        row = _poly_from_roots(others) + [Fraction(0)]
        BT.append(row[:alpha])
        G.append([a ** k / d for k in range(R)])
        for k in range(m):
            AT[k][i] = a ** k
    BT.append(_poly_from_roots(pts)[:alpha])
    G.append([Fraction(0)] * (R - 1) + [Fraction(1)])
    AT[m - 1][alpha - 1] = Fraction(1)
    return BT, G, AT


@cache
def matrices(m):
    """(BT (alpha, alpha), G (alpha, 3 or 1), AT (m, alpha)) as float64 arrays."""
    return tuple(np.array([[float(v) for v in row] for row in M], dtype=np.float64)
                 for M in exact(m))
