"""Direct forward and grad_input cut into output slabs (``direct_plan.plan``'s ``nsl``):
with fewer (image, group, channel block) tasks than threads want, each thread
works on slabs of depth (3-D) or height (2-D) with its own zero-bordered buffer.
Checked against the reference for float32 and float64, odd sizes, a short last
slab, asymmetric padding, stride (polyphase components per slab), dilation,
groups, the shifted and seg layouts, batched and unbatched; each case asserts
that slabs ran."""
import dataclasses

import numpy as np
import pytest
from _helpers import direct_checker, direct_plan, traced_direct_call

from fastconv._spec import make_spec
from fastconv._strategies import direct_plan as planner

CASES = [
    # a 3-D volume into few channels: the grad_input of conv3d-volume in small
    ((1, 1, 13, 9, 11), (3, 1, 5, 3, 3), dict(padding=((2, 1), 1, (0, 2)))),
    ((5, 11, 10, 9), (6, 5, 3, 3, 5), dict(padding=(1, 2, 2), dilation=(2, 1, 1))),
    # 2-D, one image: slabs of rows; stride 2 (forward on phase components)
    ((1, 3, 61, 41), (4, 3, 3, 5), dict(padding=((1, 2), 2), stride=2)),
    ((2, 41, 23), (5, 2, 5, 3), dict(padding=(2, (0, 1)), dilation=(1, 2))),
    # groups, one channel each (quads of vectors), a wide row (flat layout)
    ((1, 2, 15, 70), (2, 1, 3, 3), dict(padding=1, groups=2)),
    # 1-D stays one slab per task (its outputs have no row to cut)
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("xs, ws, kw", CASES)
@pytest.mark.parametrize("op", ["forward", "grad_input"])
def test_slabs_match_the_reference(op, xs, ws, kw, dtype):
    spec, check = direct_checker(op, xs, ws, kw, dtype, seed=sum(xs) + len(ws))
    slabbed = 0
    for n_threads in (2, 3):
        info = direct_plan(op, spec, n_threads)
        if info.path == "wide" and info.nsl > 1:
            slabbed += 1
            outs = (spec.input_shape5 if op == "grad_input" else spec.output_shape5)[2:]
            assert info.dsl * (info.nsl - 1) < outs[info.sax] <= \
                info.dsl * info.nsl
        check(n_threads)
    if not (op == "grad_input" and spec.stride3 != (1, 1, 1)):   # (poly: no slabs)
        assert slabbed == 2


def test_a_short_last_slab_is_covered():
    """Some case leaves its last slab shorter than the others (a prefix of vectors)."""
    short = 0
    for xs, ws, kw in CASES:
        spec = make_spec(xs, ws, dtype=np.float32, **kw)
        for op in ("forward", "grad_input"):
            for n in (2, 3):
                info = planner.plan(op, spec.input_shape5, spec.weight_shape5,
                                    spec.output_shape5, spec.stride3, spec.dilation3,
                                    spec.padding3, spec.groups, n, 4)
                if info.path != "wide":
                    continue
                outs = (spec.input_shape5 if op == "grad_input" else spec.output_shape5)[2:]
                short += outs[info.sax] % info.dsl != 0
    assert short >= 4


def test_one_thread_cuts_two_threads_slabs_and_many_tasks_one():
    """One thread plans the slabs of two (so its buffers stay within two
    threads' workspace when the dispatcher runs a call on one)."""
    spec = make_spec((1, 1, 20, 20, 20), (8, 1, 3, 3, 3), padding=1, dtype=np.float32)
    args = (spec.input_shape5, spec.weight_shape5, spec.output_shape5, spec.stride3,
            spec.dilation3, spec.padding3, 1)
    one, two = (planner.plan("grad_input", *args, n, 4) for n in (1, 2))
    assert one.nsl == two.nsl > 1
    assert planner.scratch_bytes(one, 4) < planner.scratch_bytes(two, 4)
    spec = make_spec((4, 8, 20, 20), (8, 8, 3, 3), padding=1, dtype=np.float32)
    assert direct_plan("forward", spec, 2).nsl == 1   # 8 tasks for 2 threads


@pytest.mark.parametrize("op", ["forward", "grad_input"])
def test_workspace_of_slabs_is_exact(op):
    """tracemalloc: the slab buffers are every byte the call allocates beyond its
    inputs and output, and smaller than one whole-plane buffer."""
    xs, ws, kw = (1, 2, 90, 40), (3, 2, 5, 5), dict(padding=2)
    info, ws_bytes, extra = traced_direct_call(op, xs, ws, kw, seed=3)
    assert info.nsl > 1
    assert ws_bytes == planner.scratch_bytes(info, 4) > 10_000
    assert abs(extra - ws_bytes) < 16384, (extra, ws_bytes)
    whole = make_spec((8, 2, 90, 40), ws, dtype=np.float32, **kw)   # 8 images: no slabs
    one = direct_plan(op, whole, 2)
    assert one.nsl == 1
    # two threads' slab buffers: under one whole-plane buffer
    assert planner.scratch_bytes(info, 4) < planner.scratch_bytes(dataclasses.replace(one, threads=1), 4)
