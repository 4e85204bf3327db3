"""fastconv.params: conv layer vs the equivalent fully connected layer."""
import math

import pytest

import fastconv
from fastconv.params import ParamCounts, conv_vs_dense, from_spec


def test_lenet5_c1():
    p = conv_vs_dense((1, 32, 32), (6, 1, 5, 5))
    assert p.out_shape == (6, 28, 28)
    assert (p.conv_weights, p.conv_biases, p.conv_total) == (150, 6, 156)
    assert p.dense_weights == 1024 * 4704
    assert p.dense_biases == 4704
    assert p.dense_total == 4_821_600
    assert p.ratio == pytest.approx(4_821_600 / 156)
    assert p.conv_macs == 4704 * 25
    assert p.dense_macs == 1024 * 4704


def test_alexnet_conv1():
    p = conv_vs_dense((3, 227, 227), (96, 3, 11, 11), stride=4)
    assert p.out_shape == (96, 55, 55)
    assert p.conv_total == 34_944
    assert p.dense_total == pytest.approx(4.49e10, rel=1e-3)
    assert p.dense_total == 3 * 227 * 227 * 96 * 55 * 55 + 96 * 55 * 55
    assert p.conv_macs == 96 * 55 * 55 * 3 * 121
    assert p.macs_ratio == pytest.approx(p.dense_macs / p.conv_macs)


def test_batch_axis_does_not_change_counts():
    assert conv_vs_dense((8, 1, 32, 32), (6, 1, 5, 5)) == conv_vs_dense((1, 32, 32), (6, 1, 5, 5))


def test_bias_off():
    p = conv_vs_dense((1, 32, 32), (6, 1, 5, 5), bias=False)
    assert (p.conv_biases, p.dense_biases) == (0, 0)
    assert p.conv_total == 150
    assert p.dense_total == 1024 * 4704
    assert p.bias is False


def test_groups_and_depthwise():
    # 2 groups: each output channel sees 8 of the 16 input channels.
    p = conv_vs_dense((16, 10, 10), (32, 8, 3, 3), padding=1, groups=2)
    assert p.conv_weights == 32 * 8 * 9
    assert p.conv_total == 32 * 8 * 9 + 32
    assert p.conv_macs == 32 * 100 * 8 * 9
    # the dense layer does not know about groups
    assert p.dense_weights == 16 * 100 * 32 * 100
    # depthwise
    d = conv_vs_dense((128, 56, 56), (128, 1, 3, 3), padding=1, groups=128)
    assert d.conv_total == 128 * 9 + 128
    assert d.groups == 128


def test_groups_mismatch_raises():
    with pytest.raises(ValueError):
        conv_vs_dense((16, 10, 10), (32, 5, 3, 3), groups=3)


def test_1d():
    p = conv_vs_dense((64, 4096), (64, 64, 9), padding=4)
    assert p.ndim == 1
    assert p.out_shape == (64, 4096)
    assert p.conv_total == 64 * 64 * 9 + 64
    assert p.dense_total == (64 * 4096) ** 2 + 64 * 4096
    assert p.conv_macs == 64 * 4096 * 64 * 9


def test_3d_with_stride_and_dilation():
    p = conv_vs_dense((4, 16, 16, 16), (8, 4, 3, 3, 3), stride=2, padding=1, dilation=(1, 2, 1))
    out = fastconv.output_shape((4, 16, 16, 16), (8, 4, 3, 3, 3), 2, 1, (1, 2, 1))
    assert p.ndim == 3
    assert p.out_shape == out
    assert p.conv_weights == 8 * 4 * 27
    n_out = math.prod(out)
    assert p.dense_total == 4 * 16**3 * n_out + n_out
    assert p.conv_macs == n_out * 4 * 27


def test_from_spec_and_as_dict():
    spec = fastconv.make_spec((2, 3, 227, 227), (96, 3, 11, 11), stride=4)
    p = from_spec(spec)
    assert isinstance(p, ParamCounts)
    assert p.conv_total == 34_944
    d = p.as_dict()
    assert d["conv_total"] == 34_944 and d["dense_total"] == p.dense_total
    assert d["ratio"] == pytest.approx(p.ratio)
    assert "34,944" in str(p)


def test_public_module():
    assert fastconv.params.conv_vs_dense is conv_vs_dense
