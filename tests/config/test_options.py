"""The options (fastconv.config, set_config) and geometry arguments: bad values are
refused naming the option (wrong types, bools as counts, huge values); NumPy ints
and size strings are accepted."""

import numpy as np
import pytest

import fastconv

# Every test starts from the default options (another may have loaded a config file).
pytestmark = pytest.mark.usefixtures("default_options")


@pytest.mark.parametrize("kw, name", [
    (dict(stride=2**63), "stride"), (dict(dilation=(1, 2**40)), "dilation"),
    (dict(padding=2**40), "padding"), (dict(padding=((0, 2**40), (0, 0))), "padding"),
])
def test_huge_values_are_value_errors(kw, name):
    with pytest.raises(ValueError, match=name):
        fastconv.conv2d(np.ones((1, 1, 5, 5)), np.ones((1, 1, 2, 2)), **kw)


@pytest.mark.parametrize("kw", [dict(n_threads=True), dict(memory_budget=True),
                                dict(fft_max_stride=False)])
def test_bool_is_not_a_count(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        with fastconv.config(**kw):
            pass


BAD_OPTIONS = [
    dict(n_threads=2**31), dict(n_threads=0), dict(n_threads=1.0), dict(n_threads=True),
    dict(rules=[1]), dict(rules=("x",)), dict(cache_dir=1), dict(cache_dir=b"x"),
    dict(fft_rtol=True), dict(fft_rtol=float("nan")), dict(fft_rtol=-1.0),
    dict(memory_budget="lots"), dict(memory_budget=0), dict(memory_budget="0MiB"),
    dict(memory_budget=1.5), dict(mode=["autotune"]), dict(strategy=5),
    dict(allow_fft="yes"), dict(fft_max_stride=0),
]


@pytest.mark.parametrize("kw", BAD_OPTIONS, ids=[repr(k) for k in BAD_OPTIONS])
def test_bad_options_are_refused_naming_the_option(kw):
    name = next(iter(kw))
    with pytest.raises((TypeError, ValueError), match=name):
        with fastconv.config(**kw):
            pass


def test_options_accept_numpy_ints_and_size_strings():
    with fastconv.config(n_threads=np.int64(1), memory_budget=np.int32(1 << 20),
                         fft_max_stride=np.uint8(2)) as o:
        assert type(o.n_threads) is int and o.memory_budget == 1 << 20
    with fastconv.config(memory_budget="64MiB") as o:
        assert o.memory_budget == 64 << 20
    with fastconv.config(fft_rtol=np.float32(1e-3)) as o:
        assert isinstance(o.fft_rtol, float)
