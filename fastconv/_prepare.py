"""Turn user arrays into the 5-D C-contiguous compute-dtype arrays kernels expect.

Every strategy sees the kernel flipped when ``flip=True`` and 1-D/2-D data viewed
as 3-D with singleton axes. The four strategies pad inside (``pads_inside``): they
get the input as it is and handle the zero border themselves, so no call copies
its input into a padded array. The strategy protocol still lets a strategy
without ``pads_inside`` (a new one's first version, a test's stand-in) take a
zero-padded copy, so that its kernels compute *valid* correlations, and return
grad_input of the padded shape, cropped here. Inputs are never written to:
arrays are only read, or copied.
"""
from __future__ import annotations

import numpy as np


def as_array(a, name):
    """``np.asarray`` with a clear error for None and ragged input."""
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name} could not be converted to an array: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} has dtype {arr.dtype} (shape {arr.shape}); fastconv computes in "
            "float32 or float64 and accepts bool, integer or real floating arrays only"
        )
    return arr


def padded_input(x, spec):
    """(N, C, D+pads, H+pads, W+pads) C-contiguous copy or view of ``x``."""
    pads = spec.padding3
    if not any(b or a for b, a in pads):
        return np.ascontiguousarray(x, dtype=spec.dtype).reshape(spec.input_shape5)
    # the assignment converts the dtype and gathers a strided x in one pass
    xp = np.zeros(spec.padded_shape5, dtype=spec.dtype)
    inner = tuple(slice(b, b + n) for (b, _), n in zip(pads, spec.input_shape5[2:]))
    xp[(slice(None), slice(None)) + inner] = np.reshape(x, spec.input_shape5)
    return xp


def input5(x, spec, strategy):
    """The input as ``strategy`` takes it: unpadded if it pads inside, else padded."""
    if getattr(strategy, "pads_inside", False):
        return np.ascontiguousarray(x, dtype=spec.dtype).reshape(spec.input_shape5)
    return padded_input(x, spec)


def unpad_grad(gx, spec, strategy):
    """grad_input of ``spec.input_shape5`` from what ``strategy`` returned."""
    return gx if getattr(strategy, "pads_inside", False) else crop_padding(gx, spec)


def crop_padding(gxp, spec):
    """Inverse of :func:`padded_input` for gradients: drop the padded border."""
    pads = spec.padding3
    if not any(b or a for b, a in pads):
        return gxp
    inner = tuple(slice(b, b + n) for (b, _), n in zip(pads, spec.input_shape5[2:]))
    return np.ascontiguousarray(gxp[(slice(None), slice(None)) + inner])


def flip_kernel(w5):
    return w5[:, :, ::-1, ::-1, ::-1]


def weight5(w, spec):
    """(C_out, C_in/g, KD, KH, KW) C-contiguous, flipped if ``spec.flip``."""
    w5 = np.asarray(w, dtype=spec.dtype).reshape(spec.weight_shape5)
    if spec.flip:
        w5 = flip_kernel(w5)
    return np.ascontiguousarray(w5)


def grad_output5(gy, spec):
    return np.ascontiguousarray(gy, dtype=spec.dtype).reshape(spec.output_shape5)
