"""The ``fastconv::`` custom operators: four ops whose gradients are each other.

==============================  ==============================================
op                              its gradients (what ``backward`` runs)
==============================  ==============================================
conv(x, w, b)                   x: conv_grad_input(gy, w); w: conv_grad_weight(x, gy); b: sum
conv_grad_input(gy, w)          gy: conv(g, w); w: conv_grad_weight(g, gy)
conv_grad_weight(x, gy)         x: conv_grad_input(gy, g); gy: conv(x, g)
conv_transpose(x, w, b)         x: conv(gy, w); w: conv_grad_weight(gy, x); b: sum
==============================  ==============================================

Each backward computes only what ``ctx.needs_input_grad`` asks for, and since
the gradients are again these ops, double backward works too. Ops take batched
tensors and padding as a flat list ``[before_0, after_0, before_1, ...]``; the
public functions in :mod:`fastconv.torch` normalize their arguments to that.
Every op has a fake (meta) implementation computing only the output shape, so
``torch.compile`` and ``torch.export`` trace them as single graph nodes.

Forward-mode AD (``torch.func.jvp``, ``jacfwd``, ``torch.autograd.forward_ad``)
uses that each op is linear in each of its tensor arguments: the tangent of
``op(a, b)`` is ``op(da, b) + op(a, db)`` (plus the bias tangent). The jvp rule
cannot be given to :func:`torch.library.custom_op` (it takes a backward only),
so :func:`_register_autograd` installs the ops' autograd kernel itself: an
autograd function with ``backward`` and ``jvp``.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
from torch import _C, Tensor
from torch._functorch.utils import enable_single_level_autograd_function

from .. import _plan as _fc_plan
from .. import _plan_memo as _fc_plan_memo
from .. import _transpose
from .._config import _current as _fc_current
from .._config import get_config as _fc_get_config
from .._config import with_threads as _fc_with_threads
from .._resources import max_threads
from .._spec import conv_output_size, conv_transpose_output_size, result_dtype

__all__ = ["conv", "conv_grad_input", "conv_grad_weight", "conv_transpose"]


def _np(t):
    """A NumPy view of a CPU tensor (no copy; non-contiguous views stay strided)."""
    return t.detach().resolve_conj().resolve_neg().numpy()


def _pairs(flat):
    return tuple((int(flat[2 * i]), int(flat[2 * i + 1])) for i in range(len(flat) // 2))


def _options():
    """fastconv's options in force, at torch's thread count unless fastconv's was
    configured.

    torch takes any thread count (``torch.set_num_threads(100)`` on 2 CPUs);
    fastconv refuses counts its OpenMP runtime may fail to start, so torch's
    count is clamped to :func:`fastconv._resources.max_threads`.
    """
    opts = _fc_get_config()
    if opts.n_threads is None:
        opts = _fc_with_threads(opts, min(max(1, torch.get_num_threads()), max_threads()))
    return opts


@contextlib.contextmanager
def _threads():
    """Run the plain functions under :func:`_options`."""
    token = _fc_current.set(_options())
    try:
        yield
    finally:
        _fc_current.reset(token)


def _plan(op, a_shape, b_shape, stride, padding, dilation, groups, strategy, dtype):
    """The fastconv plan of ``op`` for these arguments (as the ops receive them) under
    :func:`_options`: one per shape, kept, so that a training loop's calls skip the
    plain functions' normalization of their arguments. ``a_shape`` is the input's,
    ``b_shape`` the weight's."""
    opts = _options()
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    stride, padding, dilation = tuple(stride), tuple(padding), tuple(dilation)
    key = ("torch", op, a_shape, b_shape, stride, padding, dilation, groups, strategy, dtype)
    return _fc_plan_memo.memoized(key, opts, _make_plan, op, a_shape, b_shape, stride, padding,
                                  dilation, groups, strategy, dtype, opts)


def _make_plan(op, a_shape, b_shape, stride, padding, dilation, groups, strategy, dtype, opts):
    return _fc_plan.Plan(op, (a_shape, b_shape, stride, _pairs(padding), dilation, groups,
                              False, dtype, strategy, "zeros", None), opts)


def _check_batched(x, weight, op):
    # the fake implementations assume a batch axis: keep the real ones consistent
    if x.dim() != weight.dim():
        raise ValueError(f"fastconv::{op} takes a batched input (N, C, *spatial) for weight of "
                         f"shape {tuple(weight.shape)}, got shape {tuple(x.shape)}; "
                         "fastconv.torch's functions also take unbatched input")


def _out(t):
    return torch.from_numpy(t)


def _sum_but_channels(gy):
    return gy.sum(dim=[0] + list(range(2, gy.dim())))


def _check_geometry(stride, dilation, groups, op):
    # the real ops check this through fastconv's validation; the fake ones
    # divide by the stride, so without this a compiled call with stride 0
    # failed with ZeroDivisionError while tracing
    for name, v in (("stride", stride), ("dilation", dilation)):
        if any(a < 1 for a in v):
            raise ValueError(f"fastconv::{op}: {name} must be >= 1 on every axis, got {list(v)}")
    if groups < 1:
        raise ValueError(f"fastconv::{op}: groups must be a positive int, got {groups}")


def memory_format(t):
    """``torch.channels_last(_3d)`` for a tensor laid out so (and not also
    contiguous), else ``torch.contiguous_format``."""
    if t.dim() in (4, 5) and not t.is_contiguous():
        fmt = torch.channels_last if t.dim() == 4 else torch.channels_last_3d
        if t.is_contiguous(memory_format=fmt):
            return fmt
    return torch.contiguous_format


def in_format(t, fmt):
    """``t`` in memory format ``fmt`` (a copy only when it is not already)."""
    if fmt is torch.contiguous_format or t.is_contiguous(memory_format=fmt):
        return t
    return t.contiguous(memory_format=fmt)


def _add(a, b):
    return b if a is None else a + b


def _bias_tangent(db, shape):
    """The tangent of a bias added over ``shape``: ``db`` on every output position."""
    view = [1, -1] + [1] * (len(shape) - 2)
    return db.reshape(view).expand(shape).contiguous()


def _register_autograd(op, setup_context, backward, jvp):
    """Install the autograd kernel of custom op ``op``: ``backward`` and ``jvp``.

    What :meth:`CustomOpDef.register_autograd` installs, plus forward mode:
    there, a call whose inputs carry only forward-mode tangents ran below
    autograd and returned a tensor without a tangent (forward-mode AD saw a
    zero derivative). The autograd function is a single-level one, as those
    functorch generates for ``torch.autograd.Function``: the kernel runs inside
    functorch's transforms (``torch.func.jvp``, ``vmap``, ``grad``) at the
    level being differentiated.
    """
    overload = op._opoverload
    below = _C._after_autograd_keyset

    def forward(*args):
        keyset = args[-1]
        with _C._AutoDispatchBelowAutograd():
            return overload.redispatch(keyset & below, *args[:-1])

    def setup(ctx, inputs, output):
        setup_context(ctx, inputs[:-1], output)

    def bwd(ctx, *grads):
        needs = ctx.needs_input_grad
        try:
            ctx.needs_input_grad = needs[:-1]
            return (*backward(ctx, *grads), None)
        finally:
            ctx.needs_input_grad = needs

    def fwd(ctx, *tangents):
        return jvp(ctx, *tangents[:-1])

    fn = type(f"FastconvAutograd_{op._name}", (torch.autograd.function._SingleLevelFunction,),
              {"forward": staticmethod(forward), "setup_context": staticmethod(setup),
               "backward": staticmethod(bwd), "jvp": staticmethod(fwd)})

    def kernel(keyset, *args):
        if ((_C.is_grad_enabled() and _C._any_requires_grad(*args))
                or torch.autograd.forward_ad._current_level >= 0
                or _C._are_functorch_transforms_active()):
            with enable_single_level_autograd_function():
                return fn.apply(*args, keyset)
        with _C._AutoDispatchBelowAutograd():
            return overload.redispatch(keyset & below, *args)

    with warnings.catch_warnings():
        # custom_op registered a kernel without jvp at its creation: this replaces it
        warnings.filterwarnings("ignore", message=".*Overriding a previously registered kernel")
        warnings.filterwarnings("ignore", message="Warning only once for all operators")
        op._lib.impl(op._name, kernel, "Autograd", with_keyset=True)


# ---------------------------------------------------------------- conv
@torch.library.custom_op("fastconv::conv", mutates_args=(), device_types="cpu")
def conv(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int],
         padding: list[int], dilation: list[int], groups: int, strategy: str) -> Tensor:
    """Convolution forward, ``(N, C_in, *sp)`` x ``(C_out, C_in/g, *k)``."""
    _check_batched(x, weight, "conv")
    xn, wn = _np(x), _np(weight)
    p = _plan("forward", x.shape, weight.shape, stride, padding, dilation, groups, strategy,
              result_dtype(xn.dtype, wn.dtype))
    return _out(p(xn, wn, bias=None if bias is None else _np(bias)))


@conv.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, strategy):
    _check_geometry(stride, dilation, groups, "conv")
    nd = weight.dim() - 2
    sp = [conv_output_size(x.shape[2 + a], weight.shape[2 + a], stride[a], padding[2 * a],
                           padding[2 * a + 1], dilation[a]) for a in range(nd)]
    return x.new_empty([x.shape[0], weight.shape[0]] + sp)


def _conv_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups, strategy = inputs
    ctx.save_for_backward(x, weight)
    ctx.save_for_forward(x, weight)
    ctx.geom = (stride, padding, dilation, groups, strategy)
    ctx.has_bias = bias is not None
    ctx.formats = (memory_format(x), memory_format(weight))
    ctx.out_shape = output.shape


def _conv_backward(ctx, gy):
    x, weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    gx = gw = gb = None
    if need[0]:  # gradients in the memory format of what they are the gradient of
        gx = in_format(conv_grad_input(gy, weight, list(x.shape), *ctx.geom), ctx.formats[0])
    if need[1]:
        gw = in_format(conv_grad_weight(x, gy, list(weight.shape), *ctx.geom), ctx.formats[1])
    if ctx.has_bias and need[2]:
        gb = _sum_but_channels(gy)
    return gx, gw, gb, None, None, None, None, None


def _bilinear_jvp(op, geom):
    """The jvp of ``op(x, weight, bias, *ctx.<geom>)``: linear in x and in weight, affine
    in bias, so the tangent is op(dx, w) + op(x, dw) + db broadcast."""
    def jvp(ctx, dx, dw, db, *_):
        x, weight = ctx.saved_tensors
        args = getattr(ctx, geom)
        t = None if dx is None else op(dx, weight, None, *args)
        if dw is not None:
            t = _add(t, op(x, dw, None, *args))
        if db is not None:
            t = _add(t, _bias_tangent(db, ctx.out_shape))
        return t
    return jvp


_register_autograd(conv, _conv_setup, _conv_backward, _bilinear_jvp(conv, "geom"))


# ---------------------------------------------------------------- grad_input
@torch.library.custom_op("fastconv::conv_grad_input", mutates_args=(), device_types="cpu")
def conv_grad_input(grad_output: Tensor, weight: Tensor, input_size: list[int],
                    stride: list[int], padding: list[int], dilation: list[int], groups: int,
                    strategy: str) -> Tensor:
    """dL/dx of :func:`conv` (``input_size`` is the forward input's shape)."""
    wn, gyn = _np(weight), _np(grad_output)
    p = _plan("grad_input", tuple(input_size), weight.shape, stride, padding, dilation, groups,
              strategy, result_dtype(wn.dtype, gyn.dtype))
    return _out(p(wn, gyn))


@conv_grad_input.register_fake
def _(grad_output, weight, input_size, stride, padding, dilation, groups, strategy):
    _check_geometry(stride, dilation, groups, "conv_grad_input")
    return grad_output.new_empty(input_size)


def _gi_setup(ctx, inputs, output):
    gy, weight, input_size, stride, padding, dilation, groups, strategy = inputs
    ctx.save_for_backward(gy, weight)
    ctx.save_for_forward(gy, weight)
    ctx.input_size = list(input_size)
    ctx.geom = (stride, padding, dilation, groups, strategy)


def _gi_backward(ctx, g):
    gy, weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    d_gy = conv(g, weight, None, *ctx.geom) if need[0] else None
    d_w = conv_grad_weight(g, gy, list(weight.shape), *ctx.geom) if need[1] else None
    return d_gy, d_w, None, None, None, None, None, None


def _gi_jvp(ctx, d_gy, d_w, *_):
    gy, weight = ctx.saved_tensors
    t = None if d_gy is None else conv_grad_input(d_gy, weight, ctx.input_size, *ctx.geom)
    if d_w is not None:
        t = _add(t, conv_grad_input(gy, d_w, ctx.input_size, *ctx.geom))
    return t


_register_autograd(conv_grad_input, _gi_setup, _gi_backward, _gi_jvp)


# ---------------------------------------------------------------- grad_weight
@torch.library.custom_op("fastconv::conv_grad_weight", mutates_args=(), device_types="cpu")
def conv_grad_weight(input: Tensor, grad_output: Tensor, weight_size: list[int],
                     stride: list[int], padding: list[int], dilation: list[int], groups: int,
                     strategy: str) -> Tensor:
    """dL/dw of :func:`conv` (``weight_size`` is the weight's shape)."""
    xn, gyn = _np(input), _np(grad_output)
    p = _plan("grad_weight", input.shape, tuple(weight_size), stride, padding, dilation, groups,
              strategy, result_dtype(xn.dtype, gyn.dtype))
    return _out(p(xn, gyn))


@conv_grad_weight.register_fake
def _(input, grad_output, weight_size, stride, padding, dilation, groups, strategy):
    _check_geometry(stride, dilation, groups, "conv_grad_weight")
    return input.new_empty(weight_size)


def _gw_setup(ctx, inputs, output):
    x, gy, weight_size, stride, padding, dilation, groups, strategy = inputs
    ctx.save_for_backward(x, gy)
    ctx.save_for_forward(x, gy)
    ctx.weight_size = list(weight_size)
    ctx.geom = (stride, padding, dilation, groups, strategy)


def _gw_backward(ctx, g):
    x, gy = ctx.saved_tensors
    need = ctx.needs_input_grad
    d_x = conv_grad_input(gy, g, list(x.shape), *ctx.geom) if need[0] else None
    d_gy = conv(x, g, None, *ctx.geom) if need[1] else None
    return d_x, d_gy, None, None, None, None, None, None


def _gw_jvp(ctx, d_x, d_gy, *_):
    x, gy = ctx.saved_tensors
    t = None if d_x is None else conv_grad_weight(d_x, gy, ctx.weight_size, *ctx.geom)
    if d_gy is not None:
        t = _add(t, conv_grad_weight(x, d_gy, ctx.weight_size, *ctx.geom))
    return t


_register_autograd(conv_grad_weight, _gw_setup, _gw_backward, _gw_jvp)


# ---------------------------------------------------------------- conv_transpose
@torch.library.custom_op("fastconv::conv_transpose", mutates_args=(), device_types="cpu")
def conv_transpose(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int],
                   padding: list[int], output_padding: list[int], groups: int,
                   dilation: list[int], strategy: str) -> Tensor:
    """Transposed convolution, ``(N, C_in, *sp)`` x ``(C_in, C_out/g, *k)``."""
    _check_batched(x, weight, "conv_transpose")
    with _threads():
        y = _transpose.conv_transpose(
            _np(x), _np(weight), None if bias is None else _np(bias), tuple(stride),
            _pairs(padding), tuple(output_padding), groups, tuple(dilation), strategy=strategy)
    return _out(y)


@conv_transpose.register_fake
def _(x, weight, bias, stride, padding, output_padding, groups, dilation, strategy):
    _check_geometry(stride, dilation, groups, "conv_transpose")
    nd = weight.dim() - 2
    sp = [conv_transpose_output_size(x.shape[2 + a], weight.shape[2 + a], stride[a],
                                     padding[2 * a], padding[2 * a + 1], output_padding[a],
                                     dilation[a]) for a in range(nd)]
    return x.new_empty([x.shape[0], weight.shape[1] * groups] + sp)


def _ct_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, output_padding, groups, dilation, strategy = inputs
    ctx.save_for_backward(x, weight)
    ctx.save_for_forward(x, weight)
    ctx.transpose_geom = (stride, padding, output_padding, groups, dilation, strategy)
    ctx.out_shape = output.shape
    ctx.formats = (memory_format(x), memory_format(weight))
    ctx.geom = (stride, padding, dilation, groups, strategy)
    # output padding of a stride or more adds outputs no input reaches: the
    # convolution of the gradient then has `extra` more rows, cut off (or, for
    # grad_weight, matched by zeros after x)
    ctx.extra = [op // s for op, s in zip(output_padding, stride)]
    ctx.has_bias = bias is not None


def _ct_backward(ctx, gy):
    x, weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    gx = gw = gb = None
    if need[0]:
        gx = conv(gy, weight, None, *ctx.geom)
        for a, e in enumerate(ctx.extra):
            if e:
                gx = gx.narrow(2 + a, 0, x.shape[2 + a])
    if need[1]:
        xe = x
        if any(ctx.extra):
            pad = []
            for e in reversed(ctx.extra):  # F.pad lists the last axis first
                pad += [0, e]
            xe = torch.nn.functional.pad(x, pad)
        gw = in_format(conv_grad_weight(gy, xe, list(weight.shape), *ctx.geom), ctx.formats[1])
    if gx is not None:
        gx = in_format(gx, ctx.formats[0])
    if ctx.has_bias and need[2]:
        gb = _sum_but_channels(gy)
    return gx, gw, gb, None, None, None, None, None, None


_register_autograd(conv_transpose, _ct_setup, _ct_backward,
                   _bilinear_jvp(conv_transpose, "transpose_geom"))
