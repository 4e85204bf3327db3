"""Turn user arrays into the 5-D C-contiguous compute-dtype arrays kernels expect.

Every strategy sees the kernel flipped when ``flip=True`` and 1-D/2-D data viewed
as 3-D with singleton axes. The strategies handle the zero border inside their
kernels, so the input is passed unpadded. Inputs are never written to: arrays are
only read, or copied (to the compute dtype, or to C order).
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


def input5(x, spec):
    """(N, C, D, H, W) C-contiguous in the compute dtype (a view when it already is)."""
    return np.ascontiguousarray(x, dtype=spec.dtype).reshape(spec.input_shape5)


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
