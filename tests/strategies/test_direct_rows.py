"""The direct kernels' row blocks (``pyx/_direct_rows.h``): forward and
grad_input with one output channel per group at unit stride walk four output
rows at once. Checked against the reference for float32 and float64 with odd
sizes (rows not a multiple of four, an odd count of vectors per row),
non-square and 3-D kernels, asymmetric padding, width dilation, groups,
slabs (two threads) and batched/unbatched input; each case asserts whether
the plan chose the row blocks, and the problems off their ground (row
dilation, stride, 3 kernel rows, several input channels) that it did not."""
import numpy as np
import pytest
from _helpers import direct_checker, direct_plan, traced_direct_call

from fastconv._spec import make_spec
from fastconv._strategies import direct_plan as planner

CASES = [
    # depthwise 5x5, 28 wide: two vectors per row, 7 rows (a block of 3)
    ((2, 3, 7, 28), (3, 1, 5, 5), dict(padding=2, groups=3)),
    # 3 vectors per row (odd: the last one alone), asymmetric padding, 4x3 kernel,
    # two output channels per group
    ((1, 2, 10, 37), (4, 1, 4, 3), dict(padding=((1, 2), (2, 0)), groups=2)),
    # width dilation, unbatched
    ((3, 9, 20), (3, 1, 6, 3), dict(padding=(3, 2), dilation=(1, 2), groups=3)),
    # 3-D: one image, one channel into three (grad_input: three into one, the
    # quads), two threads cut it into slabs
    ((1, 1, 6, 9, 19), (3, 1, 3, 5, 3), dict(padding=(1, 2, 1))),
    # unbatched 3-D depthwise, 7 kernel rows, two output rows per plane
    ((2, 3, 8, 17), (2, 1, 2, 7, 3), dict(padding=(0, 2, 1), groups=2)),
]


def _expected(op, spec):
    """The rule of ``direct_plan.plan``: one channel in, fewer than 4 out per group."""
    cin, cout = spec.in_channels_per_group, spec.out_channels_per_group
    if op == "grad_input":
        cin, cout = cout, cin
    return (cin == 1 and cout < 4 and 4 <= spec.weight_shape5[3] <= 7
            and spec.dilation3[1] == 1 and spec.stride3 == (1, 1, 1))


def _uses_rows(op, spec, n_threads=1):
    info = direct_plan(op, spec, n_threads)
    return info.path == "wide" and info.rows4


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("xs, ws, kw", CASES)
@pytest.mark.parametrize("op", ["forward", "grad_input"])
def test_row_blocks_match_the_reference(op, xs, ws, kw, dtype):
    spec, check = direct_checker(op, xs, ws, kw, dtype, seed=len(xs) + sum(ws))
    assert _uses_rows(op, spec) == _expected(op, spec)
    for n_threads in (1, 2):
        check(n_threads)


def test_every_case_runs_row_blocks_somewhere():
    for xs, ws, kw in CASES:
        spec = make_spec(xs, ws, dtype=np.float32, **kw)
        assert _uses_rows("forward", spec) or _uses_rows("grad_input", spec)
    # and the one-thread plans of two cases run slabs as well at two threads
    spec = make_spec(*CASES[3][:2], dtype=np.float32, **CASES[3][2])
    assert _uses_rows("forward", spec, 2)


@pytest.mark.parametrize("ws, kw", [((3, 1, 5, 5), dict(padding=2, dilation=(2, 1), groups=3)),
                                    ((3, 1, 5, 5), dict(padding=2, stride=2, groups=3)),
                                    ((3, 1, 3, 3), dict(padding=1, groups=3)),
                                    ((2, 3, 5, 5), dict(padding=2))])
def test_no_row_blocks_off_their_ground(ws, kw):
    """Row dilation, stride, 3 kernel rows, several input channels: the quads."""
    spec = make_spec((1, 3, 12, 20), ws, dtype=np.float32, **kw)
    assert not _uses_rows("forward", spec) and not _expected("forward", spec)


def test_workspace_of_row_blocks_is_exact():
    """tracemalloc: the slack rows below the buffer are counted."""
    xs, ws, kw = (4, 1, 120, 64), (2, 1, 5, 5), dict(padding=2)   # (groups=1: the helper)
    info, ws_bytes, extra = traced_direct_call("forward", xs, ws, kw, seed=2)
    assert info.rows4
    assert ws_bytes == planner.scratch_bytes(info, 4) > 4_000
    assert abs(extra - ws_bytes) < 16384, (extra, ws_bytes)
