"""Convolution layers on Dask arrays: ``fastconv``'s ops, chunk by chunk, on a cluster.

``pip install "fastconv[dask]"``. The functions take and return ``dask.array``
arrays and have the arguments of the NumPy API (:func:`fastconv.conv`,
:func:`fastconv.grad_input`, :func:`fastconv.grad_weight`,
:func:`fastconv.conv_backward`); weights and bias are small NumPy arrays, put in
the graph once.

How the work is split:

- **batch axis**: blockwise, no communication;
- **spatial axes**: each output block is computed from exactly the input rows
  its windows read (kernel extent, dilation, stride and asymmetric padding
  included), cut from the neighbouring chunks by small slicing tasks on the
  workers that hold them; zeros only where the layer's padding is. Output
  block ``[o0, o1)`` reads input rows ``[o0*s - pb, (o1-1)*s - pb + d*(K-1) + 1)``;
- **channel axis**: one chunk (rechunked, with a :class:`ChunkWarning`, if not);
- **grad_weight**: one partial gradient per block, summed by a tree reduction
  (``split_every`` at a time), never all at once;
- each block runs the normal dispatcher for its own block shape, with the
  worker's thread count shared among the blocks it runs at once, under the
  ``fastconv.config`` options in force where the graph was built.

Transposed convolution (:func:`conv_transpose`, ``conv_transpose1d/2d/3d``,
:func:`conv_transpose_grad_input`, :func:`conv_transpose_grad_weight`,
:func:`conv_transpose_backward`, the arguments of :func:`fastconv.conv_transpose`)
is these graphs with the roles swapped, as in the NumPy API: its forward is the
grad_input graph, its grad_input the forward graph, its grad_weight the
grad_weight graph with input and grad_output exchanged. Output padding of a
stride or more appends zero rows to ``x`` (and crops them from grad_x), as
:func:`fastconv.conv_transpose` does.
"""
from __future__ import annotations

import itertools
import operator
import warnings

import numpy as np

try:
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        'fastconv.dask needs Dask: pip install "fastconv[dask]"'
    ) from e

import fastconv
from fastconv import _transpose
from fastconv._config import _validated
from fastconv._docstrings import CONV, TRANSPOSE, shared_parameters, table

from . import _blocks
from ._plan import forward_window, grad_input_window, input_bounds, output_bounds, pieces

__all__ = ["conv", "conv1d", "conv2d", "conv3d", "grad_input", "grad_weight", "conv_backward",
           "conv_transpose", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "conv_transpose_grad_input", "conv_transpose_grad_weight", "conv_transpose_backward",
           "ChunkWarning"]

SPLIT_EVERY = 8

# The parameters only the dask functions have; the others are those of the
# NumPy API (fastconv._docstrings' CONV and TRANSPOSE).
_DASK = table('''
x : dask.array.Array, shape (N, C_in, *spatial) or (C_in, *spatial)
    Chunked along batch and/or spatial axes; channels in one chunk (else
    rechunked, with a :class:`ChunkWarning`).
grad_output : dask.array.Array, the forward output's shape
    dL/dy, chunked along batch and/or spatial axes; channels in one chunk.
n_threads : int, optional
    Kernel threads per block; default: the worker's thread count divided
    among the fastconv blocks it is running.
split_every : int, default 8
    How many partial weight gradients the tree reduction sums at a time (>= 2).
input_chunks : tuple of tuple of int, optional
    Chunks of the result (e.g. ``x.chunks``); by default derived from
    grad_output's chunks.
''')


class ChunkWarning(UserWarning):
    """A dask array was rechunked to fit the convolution (e.g. channels in one chunk)."""


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------
def _dask(a, name):
    if not isinstance(a, da.Array):
        raise TypeError(
            f"{name} must be a dask array (e.g. dask.array.from_array(a, chunks=...)), "
            f"got {type(a).__name__}"
        )
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {a.dtype} (shape {a.shape}); fastconv computes in "
                        "float32 or float64 and accepts bool, integer or real floating arrays")
    if any(np.isnan(c) for c in a.shape):
        raise ValueError(f"{name} has unknown chunk sizes (shape {a.shape}); call "
                         "compute_chunk_sizes() first")
    return a


def _numpy(a, name):
    if a is None:
        return None
    if isinstance(a, da.Array):
        raise TypeError(f"{name} must be a NumPy array (small, sent to every worker once), "
                        f"got a dask array of shape {a.shape}; compute it first")
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {arr.dtype} (shape {arr.shape}); fastconv accepts "
                        "bool, integer or real floating arrays only")
    return arr


def _dtype(*dts):
    dt = np.result_type(*dts, np.float32)
    return np.dtype(dt if dt in (np.float32, np.float64) else np.float64)


def _one_channel_chunk(a, name, axis=1):
    if len(a.chunks[axis]) > 1:
        warnings.warn(
            f"{name}: the channel axis (axis {axis}, chunks {a.chunks[axis]}) must be one chunk "
            "for a convolution; rechunking it to one (this moves data between workers)",
            ChunkWarning, stacklevel=3,
        )
        a = a.rechunk({axis: -1})
    return a


def _geometry(spec):
    """Per spatial axis: (size, stride, pad_before, span, out_size)."""
    return [(i, s, p[0], d * (k - 1) + 1, o) for i, s, p, d, k, o in
            zip(spec.in_spatial, spec.stride, spec.padding, spec.dilation, spec.kernel,
                spec.out_spatial)]


def _checked(strategy, n_threads):
    """``strategy`` and ``n_threads`` checked as ``fastconv.config`` checks them.

    Checked where the graph is built: the blocks pass them to the NumPy API on
    the workers, where a bad value surfaced only at compute time.
    """
    opts = _validated(fastconv.get_config(), strategy=strategy, n_threads=n_threads)
    return opts.strategy, opts.n_threads


def _settings(spec, strategy, n_threads):
    return dict(stride=spec.stride, dilation=spec.dilation, groups=spec.groups, flip=spec.flip,
                strategy=strategy, options=_blocks.options_dict(), n_threads=n_threads)


def _given_chunks(chunks, shape, batched):
    """``input_chunks`` as tuples of ints, checked against ``shape``; with a
    batch axis of one chunk prepended when unbatched."""
    chunks = tuple(tuple(int(v) for v in c) for c in chunks)
    if tuple(map(sum, chunks)) != tuple(shape):
        raise ValueError(f"input_chunks {chunks} do not add up to the input shape {tuple(shape)}")
    return chunks if batched else ((1,),) + chunks


def _offsets(chunks):
    out, s = [], 0
    for c in chunks:
        out.append(s)
        s += c
    return out


# ---------------------------------------------------------------------------
# graph building
# ---------------------------------------------------------------------------
def _gather(dsk, src, cut_name, index, ranges):
    """Nested list of references to the pieces of ``src`` covering ``ranges``
    (one ``(lo, hi)`` per axis); partial chunks become slicing tasks, so only
    the halo rows travel, not the neighbour's whole chunk."""
    per_axis = [pieces(c, lo, hi) for c, (lo, hi) in zip(src.chunks, ranges)]

    def build(ax, js, slices, whole, pidx):
        if ax == len(per_axis):
            key = (src.name,) + js
            if whole:
                return key
            cut = (cut_name,) + index + pidx
            dsk[cut] = (operator.getitem, key, slices)
            return cut
        return [build(ax + 1, js + (j,), slices + (sl,), whole and w, pidx + (n,))
                for n, (j, sl, w) in enumerate(per_axis[ax])]

    return build(0, (), (), True, ())


def _grid(chunks):
    """All block indices and their (start, stop) per axis."""
    axes = [[(o, o + c) for o, c in zip(_offsets(ch), ch)] for ch in chunks]
    return zip(itertools.product(*[range(len(ch)) for ch in chunks]), itertools.product(*axes))


def _weights_node(dsk, name, weight, bias):
    key = (name + "-weights",)
    dsk[key] = _blocks.Weights(weight, bias)
    return key


def _array(name, dsk, deps, chunks, dtype):
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=deps)
    return da.Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), dtype))


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------
@shared_parameters(CONV, _DASK)
def conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, flip=False,
         strategy="auto", n_threads=None):
    """Forward pass of an N-d convolution layer on a dask array.

    The parameters are those of :func:`fastconv.conv`; ``x`` is a dask array,
    ``weight`` and ``bias`` NumPy arrays.

    Parameters
    ----------
    weight : ndarray, shape (C_out, C_in / groups, *kernel)
        Kernels, put in the graph once.
    bias : ndarray, shape (C_out,), optional
        Added to every output position of its channel.

    Returns
    -------
    y : dask.array.Array, shape (N, C_out, *out_spatial) or without N
        Batch chunks of ``x``; spatial chunks follow ``x``'s (output ``o``
        belongs to the chunk holding its window's centre), a single channel chunk.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, as the NumPy API, or an input that is not a
        dask array.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastconv.dask
    >>> x = da.ones((4, 3, 32, 32), chunks=(2, 3, 16, 16))
    >>> y = fastconv.dask.conv(x, np.ones((8, 3, 3, 3)), padding=1)
    >>> y.shape, y.chunks[2]
    ((4, 8, 32, 32), (16, 16))
    >>> float(y[0, 0, 10, 10].compute())
    27.0
    """
    return _conv(x, weight, bias, stride, padding, dilation, groups, flip, strategy, n_threads)


def _conv(x, weight, bias, stride, padding, dilation, groups, flip, strategy, n_threads,
          chunks=None):
    """:func:`conv`'s graph; ``chunks``: those of the (batched) result, by
    default derived from ``x``'s (a transposed convolution's grad_input gives
    its input's chunks here)."""
    x = _dask(x, "x")
    w = _numpy(weight, "weight")
    b = _numpy(bias, "bias")
    strategy, n_threads = _checked(strategy, n_threads)
    dtype = _dtype(x.dtype, w.dtype, *([] if b is None else [b.dtype]))
    spec = fastconv.make_spec(x.shape, w.shape, stride, padding, dilation, groups, flip=flip,
                              dtype=dtype)
    if b is not None and b.shape != (spec.out_channels,):
        raise ValueError(f"bias must have shape ({spec.out_channels},) (one value per output "
                         f"channel), got shape {b.shape}")
    if not spec.batched:
        x = x[None]
    x = _one_channel_chunk(x, "x")
    geo = _geometry(spec)
    if chunks is None:
        out_sp = [output_bounds(c, o, s, pb, span) for c, (_, s, pb, span, o) in
                  zip(x.chunks[2:], geo)]
        chunks = (x.chunks[0], (spec.out_channels,)) + tuple(out_sp)
    if spec.batch == 0:   # as the NumPy API: an empty result (no block has windows)
        return da.zeros(spec.output_shape, dtype=dtype, chunks=chunks)
    token = tokenize(x, w, b, spec, strategy, chunks, n_threads, _blocks.options_dict())
    name = "fastconv-conv-" + token
    dsk = {}
    wkey = _weights_node(dsk, name, w, b)
    settings = _settings(spec, strategy, n_threads)
    for idx, ranges in _grid(chunks):
        (n0, n1), _, *sp = ranges
        wins = [forward_window(o0, o1, i, s, pb, span)
                for (o0, o1), (i, s, pb, span, _) in zip(sp, geo)]
        shape = (n1 - n0, spec.out_channels) + tuple(o1 - o0 for o0, o1 in sp)
        if any(v is None for v in wins):
            blk, parts = _blocks.Block("forward", shape, dtype, None, **settings), None
        else:
            blk = _blocks.Block("forward", shape, dtype, tuple((v[2], v[3]) for v in wins),
                                **settings)
            parts = _gather(dsk, x, name + "-halo", idx,
                            [(n0, n1), (0, spec.in_channels)] + [(v[0], v[1]) for v in wins])
        dsk[(name,) + idx] = (_blocks.forward, parts, wkey, blk)
    y = _array(name, dsk, [x], chunks, dtype)
    return y if spec.batched else y[0]


def _fixed(ndim, fname):
    def f(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, flip=False,
          strategy="auto", n_threads=None):
        w = _numpy(weight, "weight")
        if w.ndim != ndim + 2:
            raise ValueError(
                f"{fname}: weight must have {ndim + 2} dimensions, got shape {w.shape}")
        return conv(x, w, bias, stride, padding, dilation, groups, flip=flip, strategy=strategy,
                    n_threads=n_threads)

    f.__name__ = f.__qualname__ = fname
    f.__doc__ = f"""{ndim}-D convolution of a dask array (:func:`fastconv.dask.conv` for {ndim}-D).

    Parameters
    ----------
    weight : ndarray, shape (C_out, C_in / groups, *kernel)
        Kernels with {ndim} spatial axes.
    bias : ndarray, shape (C_out,), optional
        Added to every output position of its channel.

    Returns
    -------
    dask.array.Array, shape (N, C_out, *out_spatial) or (C_out, *out_spatial)
        Chunked as :func:`fastconv.dask.conv` says.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, as the NumPy API, or an input that is not a
        dask array.
    """
    return shared_parameters(CONV, _DASK)(f)


conv1d, conv2d, conv3d = (_fixed(n, f"conv{n}d") for n in (1, 2, 3))


def _check_gy(gy, spec):
    if gy.shape != spec.output_shape:
        raise ValueError(f"grad_output must have the output shape {spec.output_shape} (input "
                         f"{spec.input_shape}, weight {spec.weight_shape}), got shape {gy.shape}")


@shared_parameters(CONV, _DASK)
def grad_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
               flip=False, strategy="auto", ndim=None, input_chunks=None, n_threads=None):
    """Gradient of a convolution with respect to its input, on dask arrays.

    :func:`fastconv.grad_input` block by block: each grad_input block is
    computed from the grad_output rows whose windows touch it (a halo on
    grad_output) and is exact.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of the forward input.
    weight : ndarray, shape (C_out, C_in / groups, *kernel)
        The forward pass's kernels.
    input_chunks : tuple of tuple of int, optional
        Chunks of the result (e.g. ``x.chunks``); by default derived from
        grad_output's chunks (the inverse of the forward pass's rule).

    Returns
    -------
    grad_x : dask.array.Array of shape ``input_shape``
        dL/dx.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, as the NumPy API, or an input that is not a
        dask array.
    """
    w = _numpy(weight, "weight")
    gy = _dask(grad_output, "grad_output")
    strategy, n_threads = _checked(strategy, n_threads)
    dtype = _dtype(w.dtype, gy.dtype)
    spec = fastconv.make_spec(tuple(input_shape), w.shape, stride, padding, dilation, groups,
                              flip=flip, dtype=dtype, ndim=ndim)
    _check_gy(gy, spec)
    if not spec.batched:
        gy = gy[None]
    gy = _one_channel_chunk(gy, "grad_output")
    geo = _geometry(spec)
    if input_chunks is None:
        sp_chunks = tuple(input_bounds(c, i, s, pb, span) for c, (i, s, pb, span, _) in
                          zip(gy.chunks[2:], geo))
        chunks = (gy.chunks[0], (spec.in_channels,)) + sp_chunks
    else:
        input_chunks = _given_chunks(input_chunks, spec.input_shape, spec.batched)
        chunks = (input_chunks[0], (spec.in_channels,)) + input_chunks[2:]
    if spec.batch == 0:
        return da.zeros(spec.input_shape, dtype=dtype, chunks=chunks)
    name = "fastconv-grad-input-" + tokenize(gy, w, spec, strategy, chunks, n_threads,
                                             _blocks.options_dict())
    dsk = {}
    wkey = _weights_node(dsk, name, w, None)
    settings = _settings(spec, strategy, n_threads)
    for idx, ranges in _grid(chunks):
        (n0, n1), _, *sp = ranges
        wins = [grad_input_window(i0, i1, o, s, pb, span)
                for (i0, i1), (_, s, pb, span, o) in zip(sp, geo)]
        shape = (n1 - n0, spec.in_channels) + tuple(i1 - i0 for i0, i1 in sp)
        if any(v is None for v in wins):
            blk, parts = _blocks.Block("grad_input", shape, dtype, None, **settings), None
        else:
            blk = _blocks.Block(
                "grad_input", shape, dtype, tuple((v[4], v[5]) for v in wins), **settings,
                in_shape=(n1 - n0, spec.in_channels) + tuple(v[3] - v[2] for v in wins),
                embed=tuple((v[2] - i0, v[3] - i0) for v, (i0, _) in zip(wins, sp)))
            parts = _gather(dsk, gy, name + "-halo", idx,
                            [(n0, n1), (0, spec.out_channels)] + [(v[0], v[1]) for v in wins])
        dsk[(name,) + idx] = (_blocks.grad_input, parts, wkey, blk)
    gx = _array(name, dsk, [gy], chunks, dtype)
    return gx if spec.batched else gx[0]


@shared_parameters(CONV, _DASK)
def grad_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                flip=False, strategy="auto", ndim=None, split_every=SPLIT_EVERY, n_threads=None):
    """Gradient of a convolution with respect to its weight, over dask arrays.

    :func:`fastconv.grad_weight` block by block: one partial gradient per
    grad_output block (from that block and the input rows its windows read),
    summed by a tree reduction ``split_every`` at a time.

    Parameters
    ----------
    input : dask.array.Array, shape (N, C_in, *spatial) or (C_in, *spatial)
        The forward pass's input.
    weight_shape : tuple of int
        ``(C_out, C_in / groups, *kernel)``.

    Returns
    -------
    grad_w : dask.array.Array of shape ``weight_shape`` (one chunk)
        dL/dw, summed over the batch.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, as the NumPy API, or an input that is not a
        dask array.
    """
    x = _dask(input, "input")
    gy = _dask(grad_output, "grad_output")
    strategy, n_threads = _checked(strategy, n_threads)
    dtype = _dtype(x.dtype, gy.dtype)
    spec = fastconv.make_spec(x.shape, tuple(weight_shape), stride, padding, dilation, groups,
                              flip=flip, dtype=dtype, ndim=ndim)
    _check_gy(gy, spec)
    if not isinstance(split_every, int) or split_every < 2:
        raise ValueError(f"split_every must be an int >= 2, got {split_every!r}")
    if spec.batch == 0:   # as the NumPy API: a zero gradient
        return da.zeros(spec.weight_shape, dtype=dtype, chunks=-1)
    if not spec.batched:
        x, gy = x[None], gy[None]
    x = _one_channel_chunk(x, "input")
    gy = _one_channel_chunk(gy, "grad_output")
    geo = _geometry(spec)
    name = "fastconv-grad-weight-" + tokenize(x, gy, spec, strategy, n_threads,
                                              _blocks.options_dict())
    dsk = {}
    settings = _settings(spec, strategy, n_threads)
    nblocks = 0
    for idx, ranges in _grid(gy.chunks):
        (n0, n1), _, *sp = ranges
        wins = [forward_window(o0, o1, i, s, pb, span)
                for (o0, o1), (i, s, pb, span, _) in zip(sp, geo)]
        if any(v is None for v in wins):
            blk, parts = _blocks.Block("grad_weight", spec.weight_shape, dtype, None,
                                       **settings), None
        else:
            blk = _blocks.Block("grad_weight", spec.weight_shape, dtype,
                                tuple((v[2], v[3]) for v in wins), **settings)
            parts = _gather(dsk, x, name + "-halo", idx,
                            [(n0, n1), (0, spec.in_channels)] + [(v[0], v[1]) for v in wins])
        dsk[(name, nblocks) + (0,) * len(spec.weight_shape)] = (
            _blocks.grad_weight, parts, (gy.name,) + idx, blk)
        nblocks += 1
    chunks = ((1,) * nblocks,) + tuple((n,) for n in spec.weight_shape)
    partials = _array(name, dsk, [x, gy], chunks, dtype)
    return partials.sum(axis=0, dtype=dtype, split_every=split_every)


@shared_parameters(CONV, _DASK)
def conv_backward(x, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  flip=False, strategy="auto", split_every=SPLIT_EVERY, n_threads=None):
    """Both backward passes over dask arrays (see :func:`fastconv.conv_backward`).

    Parameters
    ----------
    weight : ndarray, shape (C_out, C_in / groups, *kernel)
        The forward pass's kernels.

    Returns
    -------
    grad_x : dask.array.Array, shape and chunks of ``x``
        dL/dx.
    grad_w : dask.array.Array, shape of ``weight``
        dL/dw, summed over the batch.
    grad_b : dask.array.Array, shape (C_out,)
        Gradient for a bias, ``grad_output`` summed over batch and space.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, as the NumPy API, or an input that is not a
        dask array.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastconv.dask
    >>> x = da.ones((4, 3, 16, 16), chunks=(2, 3, 8, 8))
    >>> gx, gw, gb = fastconv.dask.conv_backward(x, np.ones((8, 3, 3, 3)),
    ...                                          da.ones((4, 8, 14, 14), chunks=(2, 8, 7, 7)))
    >>> gx.chunks == x.chunks, gw.shape, gb.compute()[:2]
    (True, (8, 3, 3, 3), array([784., 784.]))
    """
    x = _dask(x, "x")
    w = _numpy(weight, "weight")
    gy = _dask(grad_output, "grad_output")
    _checked(strategy, n_threads)
    dtype = _dtype(x.dtype, w.dtype, gy.dtype)
    spec = fastconv.make_spec(x.shape, w.shape, stride, padding, dilation, groups, flip=flip,
                              dtype=dtype)
    _check_gy(gy, spec)
    kw = dict(flip=flip, strategy=strategy, n_threads=n_threads)
    args = (stride, padding, dilation, groups)
    xs = x.astype(dtype) if x.dtype != dtype else x
    gys = gy.astype(dtype) if gy.dtype != dtype else gy
    gx = grad_input(x.shape, w.astype(dtype, copy=False), gys, *args, input_chunks=x.chunks, **kw)
    gw = grad_weight(xs, w.shape, gys, *args, split_every=split_every, **kw)
    axes = (0,) + tuple(range(2, 2 + spec.ndim)) if spec.batched else tuple(range(1, 1 + spec.ndim))
    gb = gys.sum(axis=axes, dtype=dtype, split_every=split_every)
    return gx, gw, gb


# ---------------------------------------------------------------------------
# transposed convolution: the three graphs above with the roles swapped
# ---------------------------------------------------------------------------
def _pad_extra(a, extra):
    """``a`` with ``extra`` zeros after each spatial axis, as
    ``fastconv._transpose._pad_extra`` (output padding of a stride or more)."""
    if not any(extra):
        return a
    first = a.ndim - len(extra)
    # the zeros join each axis's last chunk, and every other axis keeps x's
    # chunks (da.pad changes both: an empty x's 3 channels come back in chunks
    # (0, 3, 0)), so x's chunks, not the padding, decide the result's
    chunks = a.chunks[:first] + tuple(c[:-1] + (c[-1] + e,)
                                      for c, e in zip(a.chunks[first:], extra))
    return da.pad(a, [(0, 0)] * first + [(0, e) for e in extra]).rechunk(chunks)


def _crop_extra(a, extra):
    if not any(extra):
        return a
    ndim = len(extra)
    return a[(Ellipsis,) + tuple(slice(0, a.shape[a.ndim - ndim + i] - e)
                                 for i, e in enumerate(extra))]


@shared_parameters(TRANSPOSE, _DASK)
def conv_transpose(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                   dilation=1, *, strategy="auto", n_threads=None):
    """Transposed convolution of a dask array (see :func:`fastconv.conv_transpose`).

    PyTorch's argument order, as the NumPy API. It is the :func:`grad_input`
    graph of the convolution it transposes, so each output block is computed
    from the input rows that reach it.

    Parameters
    ----------
    weight : ndarray, shape (C_in, C_out / groups, *kernel)
        Kernels, in PyTorch's transposed layout.
    bias : ndarray, shape (C_out,), optional
        Added to every output position of its channel.

    Returns
    -------
    y : dask.array.Array, shape (N, C_out, *out_spatial) or without N
        Batch chunks of ``x``; spatial chunks follow ``x``'s (the inverse of
        :func:`conv`'s rule); dtype as :func:`fastconv.conv_transpose`.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, as the NumPy API, or an input that is not a
        dask array.
    """
    x = _dask(x, "x")
    w = _numpy(weight, "weight")
    b = _numpy(bias, "bias")
    strategy, n_threads = _checked(strategy, n_threads)
    conv_in, pads, stride, dilation, extra = _transpose._geometry(
        x.shape, w.shape, stride, padding, output_padding, dilation, groups)
    ndim = len(extra)
    if b is not None and b.shape != (conv_in[-ndim - 1],):
        raise ValueError(f"bias must have shape ({conv_in[-ndim - 1]},) (one value per output "
                         f"channel), got shape {b.shape}")
    if b is not None:
        # computed in the dtype of all three inputs, as the NumPy API (a float64
        # bias with float32 x and weight gives float64)
        dtype = _dtype(x.dtype, w.dtype, b.dtype)
        if dtype != _dtype(x.dtype, w.dtype):
            w = w.astype(dtype)
    x = _one_channel_chunk(x, "x", x.ndim - ndim - 1)
    y = grad_input(conv_in, w, _pad_extra(x, extra), stride, pads, dilation, groups,
                   strategy=strategy, ndim=ndim, n_threads=n_threads)
    if b is not None:
        y = y + b.astype(y.dtype).reshape((-1,) + (1,) * ndim)
    return y


def _fixed_transpose(ndim):
    fname = f"conv_transpose{ndim}d"

    def f(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
          *, strategy="auto", n_threads=None):
        w = _numpy(weight, "weight")
        if w.ndim != ndim + 2:
            raise ValueError(f"{fname}: weight must have {ndim + 2} dimensions (C_in, "
                             f"C_out/groups, *kernel), got shape {w.shape}")
        return conv_transpose(x, w, bias, stride, padding, output_padding, groups, dilation,
                              strategy=strategy, n_threads=n_threads)

    f.__name__ = f.__qualname__ = fname
    f.__doc__ = f"""{ndim}-D transposed convolution of a dask array.

    :func:`fastconv.dask.conv_transpose` for {ndim}-D.

    Parameters
    ----------
    weight : ndarray, shape (C_in, C_out / groups, *kernel)
        Kernels with {ndim} spatial axes.
    bias : ndarray, shape (C_out,), optional
        Added to every output position of its channel.

    Returns
    -------
    dask.array.Array, shape (N, C_out, *out_spatial) or (C_out, *out_spatial)
        Chunked as :func:`fastconv.dask.conv_transpose` says.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, as the NumPy API, or an input that is not a
        dask array.
    """
    return shared_parameters(TRANSPOSE, _DASK)(f)


conv_transpose1d, conv_transpose2d, conv_transpose3d = (_fixed_transpose(n) for n in (1, 2, 3))


@shared_parameters(TRANSPOSE, _DASK)
def conv_transpose_grad_input(input_shape, weight, grad_output, stride=1, padding=0,
                              output_padding=0, groups=1, dilation=1, *, strategy="auto",
                              input_chunks=None, n_threads=None):
    """Gradient of a transposed convolution with respect to its input, on dask arrays.

    The :func:`conv` graph of ``grad_output`` (see
    :func:`fastconv.conv_transpose_grad_input`).

    Parameters
    ----------
    input_shape : tuple of int
        Shape of the transposed convolution's input ``x``.
    weight : ndarray, shape (C_in, C_out / groups, *kernel)
        The transposed convolution's kernels.
    grad_output : dask.array.Array, the transposed output's shape
        dL/dy.
    input_chunks : tuple of tuple of int, optional
        Chunks of the result (e.g. ``x.chunks``); by default derived from
        grad_output's chunks (:func:`conv`'s rule).

    Returns
    -------
    grad_x : dask.array.Array of shape ``input_shape``
        dL/dx.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, as the NumPy API, or an input that is not a
        dask array.
    """
    w = _numpy(weight, "weight")
    gy = _dask(grad_output, "grad_output")
    strategy, n_threads = _checked(strategy, n_threads)
    conv_in, pads, stride, dilation, extra = _transpose._geometry(
        input_shape, w.shape, stride, padding, output_padding, dilation, groups)
    _transpose._check_gy(gy, conv_in)
    ndim = len(extra)
    gy = _one_channel_chunk(gy, "grad_output", gy.ndim - ndim - 1)
    chunks = None
    if input_chunks is not None:
        batched = len(conv_in) == ndim + 2
        c = _given_chunks(input_chunks, input_shape, batched)
        # the convolution's output is x with the `extra` zero rows at each axis's
        # end: the last chunk holds them until they are cropped
        chunks = (c[0], (w.shape[0],)) + tuple(ch[:-1] + (ch[-1] + e,)
                                              for ch, e in zip(c[2:], extra))
    gx = _conv(gy, w, None, stride, pads, dilation, groups, False, strategy, n_threads,
               chunks=chunks)
    return _crop_extra(gx, extra)


@shared_parameters(TRANSPOSE, _DASK)
def conv_transpose_grad_weight(input, weight_shape, grad_output, stride=1, padding=0,
                               output_padding=0, groups=1, dilation=1, *, strategy="auto",
                               split_every=SPLIT_EVERY, n_threads=None):
    """Gradient of a transposed convolution with respect to its weight, over dask arrays.

    The :func:`grad_weight` graph with input and grad_output exchanged (see
    :func:`fastconv.conv_transpose_grad_weight`).

    Parameters
    ----------
    input : dask.array.Array, shape (N, C_in, *spatial) or (C_in, *spatial)
        The transposed convolution's input.
    weight_shape : tuple of int, (C_in, C_out / groups, *kernel)
        Shape of its weight.
    grad_output : dask.array.Array, the transposed output's shape
        dL/dy.

    Returns
    -------
    grad_w : dask.array.Array of shape ``weight_shape`` (one chunk)
        dL/dw, summed over the batch.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, as the NumPy API, or an input that is not a
        dask array.
    """
    x = _dask(input, "input")
    gy = _dask(grad_output, "grad_output")
    strategy, n_threads = _checked(strategy, n_threads)
    conv_in, pads, stride, dilation, extra = _transpose._geometry(
        x.shape, weight_shape, stride, padding, output_padding, dilation, groups)
    _transpose._check_gy(gy, conv_in)
    ndim = len(extra)
    x = _one_channel_chunk(x, "input", x.ndim - ndim - 1)
    gy = _one_channel_chunk(gy, "grad_output", gy.ndim - ndim - 1)
    return grad_weight(gy, tuple(int(s) for s in weight_shape), _pad_extra(x, extra), stride,
                       pads, dilation, groups, strategy=strategy, ndim=ndim,
                       split_every=split_every, n_threads=n_threads)


@shared_parameters(TRANSPOSE, _DASK)
def conv_transpose_backward(x, weight, grad_output, stride=1, padding=0, output_padding=0,
                            groups=1, dilation=1, *, strategy="auto", split_every=SPLIT_EVERY,
                            n_threads=None):
    """The backward passes of a transposed convolution over dask arrays.

    As :func:`fastconv.conv_transpose_backward` (dtypes as there), all three
    gradients.

    Parameters
    ----------
    weight : ndarray, shape (C_in, C_out / groups, *kernel)
        The forward pass's kernels.
    grad_output : dask.array.Array, the transposed output's shape
        dL/dy.

    Returns
    -------
    grad_x : dask.array.Array, shape and chunks of ``x``
        dL/dx.
    grad_w : dask.array.Array, shape of ``weight``
        dL/dw, summed over the batch.
    grad_b : dask.array.Array, shape (C_out,)
        Gradient for a bias, ``grad_output`` summed over batch and space.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, as the NumPy API, or an input that is not a
        dask array.
    """
    x = _dask(x, "x")
    w = _numpy(weight, "weight")
    gy = _dask(grad_output, "grad_output")
    _checked(strategy, n_threads)
    conv_in = _transpose._geometry(x.shape, w.shape, stride, padding, output_padding, dilation,
                                   groups)[0]
    _transpose._check_gy(gy, conv_in)
    args = (stride, padding, output_padding, groups, dilation)
    kw = dict(strategy=strategy, n_threads=n_threads)
    gx = conv_transpose_grad_input(x.shape, w, gy, *args, input_chunks=x.chunks, **kw)
    gw = conv_transpose_grad_weight(x, w.shape, gy, *args, split_every=split_every, **kw)
    ndim = w.ndim - 2
    axes = tuple(i for i in range(gy.ndim) if i != gy.ndim - ndim - 1)
    gb = gy.sum(axis=axes, dtype=_dtype(x.dtype, w.dtype, gy.dtype), split_every=split_every)
    return gx, gw, gb
