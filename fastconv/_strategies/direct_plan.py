"""The direct strategy's planner: how a kernel call of ``pyx/_direct.pyx`` runs.

Pure Python, run once per problem (``fastconv._strategies.direct`` keeps the
plans, and a :class:`fastconv.Plan` keeps the kernel call it prepares): the
path (wide register tiles, polyphase grad_input, or the row loops), the task
partition, the buffer layout, every scratch buffer and the index arrays the
kernels read (tap offsets, vector bases, component tables). The result is a
frozen :class:`KernelPlan`; the kernels in ``pyx/_direct.pyx`` only execute it:
they check their arrays against the call it was made for and trust the rest.

The layout constants come from the kernels' headers (``pyx/_kconst.h``), which
the extension module exports.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from .._ext import _direct
from .._spec import conv_output_size

FC_TILE = _direct.TILE            # outputs per forward register tile
FC_OBLOCK = _direct.OBLOCK        # output channels per forward tile
FC_GW_OCH = _direct.GW_OCH        # output channels per grad_weight task, at most
FC_GW_ACC = _direct.GW_ACC        # double lanes per weight in grad_weight's accumulators
FC_ROWS_KMAX = _direct.ROWS_KMAX  # kernel rows the row blocks are compiled for
LANES = _direct.LANES             # itemsize -> lanes of a planned (64-byte) vector
PM = _direct.PM_META              # meta entries per polyphase component


class PolyComponent(NamedTuple):
    """One polyphase component of grad_x ("poly" path). Its first ``PM`` fields,
    in this order, are the kernel's table entries for it."""
    ntaps: int     # taps that reach it
    wofs: int      # where its weights start in the gathered kernel
    oofs: int      # where its taps' offsets start in the plan's ``off``
    jd: int        # first grad_x position of the component, per axis
    jh: int
    jw: int
    nd: int        # grad_x positions it holds, per axis
    nh: int
    nw: int
    fd: int        # its phase, per axis
    fh: int
    fw: int
    wpad: int      # its outputs in the buffer's row pitch, rounded up to a tile
    taps: tuple    # (flat tap index, buffer offset) of each tap


def _ro(a):
    """``a`` as a read-only, contiguous intp array (a plan is shared between threads)."""
    a = np.ascontiguousarray(a, dtype=np.intp)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class KernelPlan:
    """How one call of a ``pyx/_direct.pyx`` kernel runs (:func:`plan` makes it).

    The first fields are the call it was made for, which the kernels check their
    arrays against. Then the path ("wide", "poly" or "rows"), the task partition
    (``tasks``, and ``threads`` that get work), the buffer plane ``B``, the
    scratch buffers (``per_thread`` and ``once``: name -> (elements, kind), kind
    "x" for the working dtype, "f8" or "intp"), then each path's own fields.
    Read-only, arrays included: any number of threads may run it at once.
    """
    op: str
    xs: tuple
    ws: tuple
    ys: tuple
    stride: tuple
    dilation: tuple
    padding: tuple
    groups: int
    itemsize: int
    finite: bool          # made for finite weights (grad_input: the kernel checks)
    path: str
    tasks: int
    threads: int
    B: tuple
    per_thread: Mapping[str, tuple]
    once: Mapping[str, tuple]
    #: each tap's offset in a channel's buffer: wide forward/grad_input; wide
    #: grad_weight: a pass's taps (the second channel's one plane further); poly:
    #: the components' taps, each component's from its ``oofs``
    off: np.ndarray | None = None
    # -- wide
    phq: np.ndarray | None = None   # each buffer component's (q0, q1, q2), flat
    nph: int = 0                    # components in a channel's buffer
    P1: int = 0                     # one component's plane
    wshift: bool = False            # the kw-shifted layout (one component per tap column)
    wlen: int = 0                   # outputs in the buffer's row pitch
    wpad: int = 0                   # ... rounded up to the vectors
    sax: int = 0                    # slabs: axis, length, count
    dsl: int = 0
    nsl: int = 1
    souts: tuple = ()               # one slab's outputs
    # -- wide forward / grad_input
    vmode: str = ""                 # vector layout: "flat" row pitch or "seg" rows
    nv: int = 0                     # vectors per channel
    nseg: int = 0                   # vectors per output row ("seg")
    vrun: int = 0                   # vectors run per channel over all slabs
    rows4: bool = False             # row blocks (depthwise-like, 4+ kernel rows)
    vb: np.ndarray | None = None    # each vector's base in a channel's buffer
    offr: np.ndarray | None = None  # each tap column's offset (its first kernel row)
    # -- wide grad_weight
    ncb: int = 1                    # blocks of input channels
    och: int = 0                    # output channels per task
    cpp: int = 1                    # input channels per pass
    # -- poly
    meta: tuple = ()                # PolyComponent of each component that runs
    meta_table: np.ndarray | None = None   # their first PM fields, flat (the kernel's)
    wmax: int = 0                   # the largest component's wpad
    amax: tuple = ()                # grad_output's front padding in the buffer
    ncomp: int = 1                  # components that hold grad_x positions

    def thread_bytes(self, name):
        """Bytes of one thread's buffer ``name``, rounded up to 64 (its alignment)."""
        n, kind = self.per_thread[name]
        return _rup(n * _KIND_BYTES.get(kind, self.itemsize), 64)


def check(op, xs, ws, ys, stride, dilation, padding, groups):
    """ValueError unless input ``xs`` (unpadded), weight ``ws`` and output ``ys`` fit."""
    if len(xs) != 5 or len(ws) != 5 or len(ys) != 5 or len(stride) != 3 \
            or len(dilation) != 3 or len(padding) != 3:
        raise ValueError(f"{op}: expected 5-D shapes and 3 strides, dilations, padding pairs")
    if groups < 1 or ws[0] % groups or xs[1] != ws[1] * groups:
        raise ValueError(f"{op}: weight shape {ws} does not fit input shape {xs} with "
                         f"groups={groups}")
    if ys[0] != xs[0] or ys[1] != ws[0]:
        raise ValueError(f"{op}: output shape {ys} does not fit input {xs} and weight {ws}")
    for i in range(3):
        s, d, (pb, pa) = stride[i], dilation[i], padding[i]
        if s < 1 or d < 1 or pb < 0 or pa < 0:
            raise ValueError(f"{op}: stride {stride}, dilation {dilation} must be >= 1 and "
                             f"padding {padding} >= 0")
        o = conv_output_size(xs[2 + i], ws[2 + i], s, pb, pa, d)
        if o < 1 or ys[2 + i] != o:
            raise ValueError(f"{op}: output shape {ys} does not match input {xs}, weight "
                             f"{ws}, stride {stride}, padding {padding}, dilation {dilation}")
    if min(xs + ws + ys) < 1:
        raise ValueError(f"{op}: empty shapes {xs}, {ws}, {ys}")


def _rup(a, m):
    return (a + m - 1) // m * m


#: bytes per element of a buffer kind ("x": the working dtype's itemsize)
_KIND_BYTES = {"f8": 8, "intp": np.dtype(np.intp).itemsize}


def _poly_axis(s, p, I, f):
    """``(j0, n)`` of phase ``f`` along one axis: it holds grad_x at
    ``i = j*s + f - p`` for ``j0 <= j < j0 + n`` (``n`` = 0: no input position)."""
    j0 = (p - f + s - 1) // s
    return j0, max(0, (p + I - 1 - f) // s + 1 - j0)


def _poly_plan(xs, ws, ys, stride, dilation, padding):
    """grad_input's polyphase components at stride > 1 (see _gin_poly_task).

    Only the components some tap reaches and that hold grad_x positions are
    listed: at most one per tap, whatever the stride. The others are left at
    the zeros the kernel writes first, and enumerating all ``s`` phases per
    axis took time and memory in the stride (a product over the three axes).
    ``ncomp`` counts the components that hold grad_x positions, tap or not
    (``min(s, I)`` phases per axis), as the cost model's coefficients were
    fitted with it.
    """
    amax = [(k - 1) * d // s for k, d, s in zip(ws[2:], dilation, stride)]
    # the buffer plane: grad_output placed at amax, long enough for every phase's
    # rows (j0 + n = max(j0, (p + I - 1 - f) // s + 1) is largest at f = 0)
    B = [max((p + s - 1) // s, (p + I - 1) // s + 1) + am
         for s, (p, _), I, am in zip(stride, padding, xs[2:], amax)]
    taps = {}
    for kd in range(ws[2]):
        for kh in range(ws[3]):
            for kw in range(ws[4]):
                a = [k * d for k, d in zip((kd, kh, kw), dilation)]
                f = tuple(a[i] % stride[i] for i in range(3))
                a = [a[i] // stride[i] for i in range(3)]
                taps.setdefault(f, []).append(
                    ((kd * ws[3] + kh) * ws[4] + kw,
                     ((amax[0] - a[0]) * B[1] + amax[1] - a[1]) * B[2] + amax[2] - a[2]))
    meta, wmax, wofs, oofs = [], FC_TILE, 0, 0
    cw = ws[0] * ws[1]   # weights per tap
    for fd, fh, fw in sorted(taps):   # the phase order of a full enumeration
        (jd, nd), (jh, nh), (jw, nw) = [_poly_axis(stride[i], padding[i][0], xs[2 + i], f)
                                        for i, f in enumerate((fd, fh, fw))]
        if not (nd and nh and nw):
            continue
        t = taps[fd, fh, fw]
        wlen = ((nd - 1) * B[1] + nh - 1) * B[2] + nw
        wpad = _rup(wlen, FC_TILE)
        wmax = max(wmax, wpad)
        meta.append(PolyComponent(len(t), wofs, oofs, jd, jh, jw, nd, nh, nw, fd, fh, fw,
                                  wpad, tuple(t)))
        wofs += cw * len(t)
        oofs += len(t)
    ncomp = 1
    for s, I in zip(stride, xs[2:]):
        ncomp *= min(s, I)
    off = np.zeros(ws[2] * ws[3] * ws[4], dtype=np.intp)
    for m in meta:
        off[m.oofs:m.oofs + m.ntaps] = [o for _, o in m.taps]
    table = np.array([m[:PM] for m in meta], dtype=np.intp).reshape(-1)
    return dict(B=tuple(B), wmax=wmax, meta=tuple(meta), amax=tuple(amax), ncomp=ncomp,
                off=_ro(off), meta_table=_ro(table if len(meta) else np.zeros(PM)))


def plan(op, xs, ws, ys, stride, dilation, padding, groups, n_threads, itemsize,
         general=False, finite=True):
    """How a kernel call runs and every scratch buffer it allocates.

    Parameters are the call's: ``xs`` the unpadded input shape, ``ws`` the weight's,
    ``ys`` the output's (all 5-D), ``stride``, ``dilation`` (3 each), ``padding``
    ((before, after) * 3); ``general`` forces the row loops; ``finite``
    (grad_input) says whether the weights are all finite (the kernels refuse a
    plan made for finite weights when they are not).

    Returns
    -------
    KernelPlan
    """
    check(op, xs, ws, ys, stride, dilation, padding, groups)
    N, C, CO, CIG, G = xs[0], xs[1], ws[0], ws[1], groups
    COG, ksz = CO // G, ws[2] * ws[3] * ws[4]
    ncb = 1
    unit = all(s == 1 for s in stride)
    wide = not general and (op != "grad_input" or (unit and finite))
    per, once = {}, {}
    info = {"path": "wide" if wide else "rows"}
    if op == "grad_input" and not unit and finite and not general:
        info["path"] = "poly"
        poly = _poly_plan(xs, ws, ys, stride, dilation, padding)
        tasks = N * G * ((CIG + FC_OBLOCK - 1) // FC_OBLOCK)
        B = poly["B"]
        per["xbuf"] = (COG * B[0] * B[1] * B[2] + FC_TILE, "x")
        per["wide"] = (FC_OBLOCK * poly["wmax"], "x")
        per["key"] = (1, "intp")
        once["wt"] = (CO * CIG * ksz, "x")
        once["off"] = (ksz, "intp")
        once["meta"] = (PM * len(poly["meta"]), "intp")
        info.update(poly)
    elif wide:
        vl = LANES[itemsize]
        sax, dsl, nsl = _slabs(op, xs, ws, ys, groups, n_threads)
        # depthwise-like (one channel in per group, fewer than FC_OBLOCK out) at
        # unit stride: row blocks on the seg layout, where they beat the vector
        # quads (kernels of 4 rows or more; not 3x3, nor a grad_input from several
        # output channels into one input channel: docs/bench/notes.md)
        rows4 = (op != "grad_weight" and unit and dilation[1] == 1 and not _NO_ROWS4
                 and _ROWS_KMIN <= ws[3] <= FC_ROWS_KMAX
                 and (CIG if op == "grad_input" else COG) < FC_OBLOCK
                 and (COG if op == "grad_input" else CIG) == 1)
        outs, B, phases, phq, wlen = _layout(op, xs, ws, ys, stride, dilation, padding, False,
                                             sax, dsl)
        info["wshift"] = False
        if ws[4] > 1:
            # the kw-shifted layout: no padding columns, KW times the buffer
            sh = _layout(op, xs, ws, ys, stride, dilation, padding, True, sax, dsl)
            nvh = (sh[4] + vl - 1) // vl
            P1h = sh[1][0] * sh[1][1] * sh[1][2]
            cigb = 1 if op == "grad_weight" else (COG if op == "grad_input" else CIG)
            nvbest = (wlen + vl - 1) // vl
            if op != "grad_weight":
                nvbest = min(nvbest, outs[0] * outs[1] * ((outs[2] + vl - 1) // vl))
            # (unit stride only, and 10% fewer vectors: its fill costs KW times
            # more, which a small saving does not pay for)
            # (not under row blocks: their KW component planes run slower than
            # the plain buffer)
            if (not rows4 and all(st == 1 for st in stride) and nvh < 0.9 * nvbest
                    and cigb * len(sh[3]) * P1h * itemsize <= _SHIFT_BYTES):
                outs, B, phases, phq, wlen = sh
                info["wshift"] = True
        nph = len(phq)
        P1 = B[0] * B[1] * B[2]
        P = nph * P1   # one channel's components
        once["off"] = (ksz, "intp")
        once["phq"] = (3 * nph, "intp")
        info.update(phq=_ro(np.array(phq).reshape(-1)), nph=nph, P1=P1)
        off = _offsets(ws[2:], dilation, stride, B, phases, P1, info["wshift"])
        if op == "grad_weight":
            wpad = _rup(wlen, vl)
            # output channels per task: each input plane is filled once for all
            # of them (up to FC_GW_OCH: the fewer fills pay most on strided
            # layers, where the fill gathers), while their grad_output
            # rows stay within _GW_ROWS_BYTES
            och = min(FC_GW_OCH, _rup(COG, FC_OBLOCK),
                      max(FC_OBLOCK, _GW_ROWS_BYTES // (wpad * itemsize)
                          // FC_OBLOCK * FC_OBLOCK))
            nob = (COG + och - 1) // och
            base = G * nob
            # enough tasks to balance the threads: split the input channels too
            if base < 2 * n_threads:
                ncb = min(CIG, (2 * n_threads + base - 1) // base)
            cb = (CIG + ncb - 1) // ncb
            # ... and keep a task's accumulators within _GW_ACC_BYTES
            cb = max(1, min(cb, _GW_ACC_BYTES // (och * ksz * FC_GW_ACC * 8)))
            ncb = (CIG + cb - 1) // cb
            tasks = base * ncb
            # two input channels per pass where a task has two and their planes
            # stay small: the register blocks then take their taps from both, so
            # fewer blocks run short of the level's taps (3x3: blocks of 3.6 taps
            # where one channel's 9 split into threes)
            cpp = 2 if cb >= 2 and 2 * (P + vl) * itemsize <= _GW_PAIR_BYTES else 1
            per["gyw"] = (min(och, COG) * wpad, "x")
            per["xbuf"] = (cpp * (P + vl), "x")
            per["acc"] = (_rup(cb, cpp) * och * ksz * FC_GW_ACC, "f8")
            # a pass's taps: the first channel's, then the second's one plane further
            once["off"] = (cpp * ksz, "intp")
            info.update(ncb=ncb, och=och, cpp=cpp,
                        off=_ro(np.concatenate([off + j * (P + vl) for j in range(cpp)])))
        else:
            cig, cog = (COG, CIG) if op == "grad_input" else (CIG, COG)
            tasks = N * G * nsl * ((cog + FC_OBLOCK - 1) // FC_OBLOCK)
            # the vector layout with less work: pairs of vectors (4 channels at a
            # time), or quads (one channel at a time, groups with fewer channels)
            unit = 2 if cog >= FC_OBLOCK else 4
            nvf = (wlen + vl - 1) // vl
            nseg = (outs[2] + vl - 1) // vl
            nvs = outs[0] * outs[1] * nseg
            # (one channel at a time, the calls are short: seg must save 10%)
            seg = _rup(nvs, unit) * (1.0 if unit == 2 else 1.1) < _rup(nvf, unit)
            if rows4:
                seg = True
            nv = nvs if seg else nvf
            wpad = _rup(nv, 4) * vl   # staging: a channel's vectors
            # vectors run per channel over all slabs (a short last slab runs a prefix)
            last = _slab_len(op, xs, ys, sax) - (nsl - 1) * dsl
            lo = list(outs)
            lo[sax] = last
            nvl = (lo[0] * lo[1] * nseg if seg else
                   (((lo[0] - 1) * B[1] + lo[1] - 1) * B[2] + lo[2] + vl - 1) // vl)
            vrun = (nsl - 1) * _rup(nv, unit) + _rup(nvl, unit)
            info.update(vmode="seg" if seg else "flat", nv=nv, nseg=nseg, vrun=vrun)
            # (row blocks read up to 3 rows below a plane: slack)
            per["xbuf"] = (cig * P + FC_TILE + (3 * B[2] if rows4 else 0), "x")
            per["wide"] = (FC_OBLOCK * wpad, "x")
            per["key"] = (1, "intp")
            once["vb"] = (_rup(nv, 4), "intp")
            once["offr"] = (ws[2] * ws[4], "intp")
            if op == "grad_input":
                once["wt"] = (CO * CIG * ksz, "x")  # the transposed, flipped kernel
            info.update(rows4=rows4, off=_ro(off), offr=_ro(off.reshape(ws[2:])[:, 0, :].reshape(-1)),
                        vb=_ro(_vbases(nv, vl, seg, outs, B, nseg)))
        info.update(wlen=wlen, wpad=wpad, sax=sax, dsl=dsl, nsl=nsl, souts=tuple(outs))
    else:
        B = ys[2:]
        tasks = {"forward": N * CO, "grad_input": N * C, "grad_weight": CO * CIG}[op]
        if op == "grad_weight":
            per["acc"] = (ksz, "f8")
    info.update(tasks=tasks, threads=max(1, min(n_threads, tasks)), B=tuple(B),
                per_thread=MappingProxyType(per), once=MappingProxyType(once))
    return KernelPlan(op, tuple(xs), tuple(ws), tuple(ys), tuple(stride), tuple(dilation),
                      tuple(tuple(p) for p in padding), groups, itemsize, finite, **info)


def _offsets(k3, d3, s3, B, phases, P1, wshift):
    """Flat offset of each tap in one channel's buffer (its component, then its place)."""
    off = np.empty(k3[0] * k3[1] * k3[2], dtype=np.intp)
    t = 0
    for kd in range(k3[0]):
        for kh in range(k3[1]):
            for kw in range(k3[2]):
                a = [k * d for k, d in zip((kd, kh, kw), d3)]
                f = [phases[i].index(a[i] % s3[i]) for i in range(3)]
                a = [a[i] // s3[i] for i in range(3)]
                if wshift:   # one component per tap column
                    f[2], a[2] = kw, 0
                off[t] = (((f[0] * len(phases[1]) + f[1]) * len(phases[2]) + f[2]) * P1
                          + (a[0] * B[1] + a[1]) * B[2] + a[2])
                t += 1
    return off


def _vbases(nv, vl, seg, outs, B, nseg):
    """Each vector's base in a channel's buffer; the vectors that round the count
    up to 4 read the buffer's start."""
    vb = np.zeros(_rup(nv, 4), dtype=np.intp)
    if not seg:
        vb[:nv] = np.arange(nv) * vl
    else:
        od, oh, sg = np.meshgrid(np.arange(outs[0]), np.arange(outs[1]),
                                 np.arange(nseg), indexing="ij")
        vb[:nv] = ((od * B[1] + oh) * B[2] + sg * vl).reshape(-1)
    return vb


def _slab_len(op, xs, ys, sax):
    """The whole output's length along the slab axis."""
    return (xs if op == "grad_input" else ys)[2 + sax]


# tests: turn the row blocks off (the quad tiles run instead)
_NO_ROWS4 = False
# row blocks from this many kernel rows (fewer rows share fewer loads)
_ROWS_KMIN = 4

# forward / grad_input: slabs while there are fewer (n, group, channel block)
# tasks than this many per thread
_SLAB_TASKS = 2
_SLAB_OUTS = 256


def _slabs(op, xs, ws, ys, groups, n_threads):
    """``(axis, length, count)`` of the output slabs of the wide forward/grad_input.

    With fewer (image, group, block of output channels) tasks than
    ``_SLAB_TASKS`` per thread (e.g. one image into one channel: a 3-D volume's
    grad_input), the outputs are cut into slabs along depth (height for 2-D),
    each with its own zero-bordered buffer (its outputs plus the kernel's
    span), so every thread gets work. One slab: ``(0, the output's depth, 1)``.
    """
    outs = (xs if op == "grad_input" else ys)[2:]
    sax = 0 if outs[0] > 1 else 1
    # one thread cuts the slabs of two: the dispatcher runs small problems on one
    # thread, and its buffers must stay within what workspace() counts for more
    n_threads = max(2, n_threads)
    if op == "grad_weight" or outs[sax] < 2:
        return 0, outs[0], 1
    cog = ws[1] * groups if op == "grad_input" else ws[0]
    base = xs[0] * groups * ((cog // groups + FC_OBLOCK - 1) // FC_OBLOCK)
    if base >= _SLAB_TASKS * n_threads:
        return 0, outs[0], 1
    # twice the tasks per thread (balance), each slab then about equal, none
    # under _SLAB_OUTS outputs (a tiny call would mostly fill halos)
    nsl = min(outs[sax], -(-2 * _SLAB_TASKS * n_threads // base),
              outs[0] * outs[1] * outs[2] // _SLAB_OUTS)
    if nsl <= 1:
        return 0, outs[0], 1
    dsl = -(-outs[sax] // nsl)
    return sax, dsl, -(-outs[sax] // dsl)


# the kw-shifted layout only while a thread's buffer stays this small (cache)
_SHIFT_BYTES = 4 << 20
# grad_weight: a task's grad_output rows and its double accumulators at most
_GW_ROWS_BYTES = 2 << 20
_GW_ACC_BYTES = 4 << 20
# grad_weight: two input planes per pass while both fit this (L2)
_GW_PAIR_BYTES = 512 << 10


def _layout(op, xs, ws, ys, stride, dilation,
            padding, shift, sax=0, dsl=0):
    """The buffer of the wide path: (outs, B, phases, phq, wlen).

    Each channel's buffer holds components, one per entry of ``phq``: component
    (f0, f1, f2) at [z, r, c] = source[z*s0 - q0, r*s1 - q1, c*s2 - q2] (zero
    outside), q = pad_before - f. grad_input is a stride-1 correlation of
    grad_output padded by d*(K-1) - padding. Per axis the phases f are the
    polyphase components k*d mod s; with ``shift`` the last axis has one
    component per tap column instead (f = kw*dw, B = the output width), so
    every tap reads its column at offset 0 and no padding column is computed.
    ``dsl`` > 0: the buffer of one slab of ``dsl`` outputs along axis ``sax``
    (``outs`` is then the slab's).
    """
    span = [d * (k - 1) for k, d in zip(ws[2:], dilation)]
    if op == "grad_input":
        outs, steps = tuple(xs[2:]), (1, 1, 1)
        pb = [e - p[0] for e, p in zip(span, padding)]
    else:
        outs, steps = tuple(ys[2:]), tuple(stride)
        pb = [p[0] for p in padding]
    if dsl > 0:
        outs = outs[:sax] + (dsl,) + outs[sax + 1:]
    B = [o + e // s for o, e, s in zip(outs, span, steps)]
    phases = [sorted({k * d % s for k in range(kk)})
              for kk, d, s in zip(ws[2:], dilation, steps)]
    if shift:
        B[2] = outs[2]
        phases[2] = [k * dilation[2] for k in range(ws[4])]
    phq = [(pb[0] - f0, pb[1] - f1, pb[2] - f2)
           for f0 in phases[0] for f1 in phases[1] for f2 in phases[2]]
    wlen = ((outs[0] - 1) * B[1] + outs[1] - 1) * B[2] + outs[2]
    return outs, B, phases, phq, wlen


def scratch_bytes(info, itemsize):
    """Bytes of the buffers a call of ``info`` allocates, and of the index arrays
    the plan holds (``once``).

    The wide path (``_direct.WideCall``) takes one block per call: each thread's
    buffers rounded up to 64 bytes, a key slot per thread, 64 bytes to align it.
    """
    size = dict(_KIND_BYTES, x=itemsize)
    once = sum(n * size[k] for n, k in info.once.values())
    if info.path == "wide":
        per = sum(info.thread_bytes(name) for name in info.per_thread if name != "key")
        return info.threads * (per + size["intp"]) + 64 + once
    return info.threads * sum(n * size[k] for n, k in info.per_thread.values()) + once
