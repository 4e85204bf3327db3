"""The CNN-vs-dense demo (fastconv.demo, examples/cnn_vs_dense.py), briefly trained."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")
from fastconv import demo  # noqa: E402


def test_finite_difference_check_is_tight():
    assert demo.finite_difference_check(seed=3) < 1e-6


def test_short_training_is_well_above_chance():
    results = demo.run(epochs=4, cnn_widths=((4, 8),), dense_widths=(32,), seed=1)
    by_kind = {r["kind"]: r for r in results}
    assert set(by_kind) == {"cnn", "dense"}
    for r in results:
        assert r["accuracy"] > 0.6, r  # chance is 0.1
    # counted by hand: conv 1->4 3x3 (40) + conv 4->8 3x3 (296) + linear 32->10 (330)
    assert by_kind["cnn"]["params"] == 40 + 296 + 330
    assert by_kind["dense"]["params"] == 64 * 32 + 32 + 32 * 10 + 10
    md = demo.table(results)
    assert md.count("\n") == 3 and "CNN conv4-conv8" in md


def test_maxpool_backward_routes_gradient_to_the_max():
    x = np.array([[[[1.0, 5.0], [2.0, 3.0]]]])
    y, mask = demo.maxpool2(x)
    assert y.item() == 5.0
    np.testing.assert_array_equal(demo.maxpool2_backward(np.array([[[[2.0]]]]), mask),
                                  [[[[0.0, 2.0], [0.0, 0.0]]]])


def test_main_quick_runs(capsys, tmp_path):
    assert demo.main(["--quick", "--epochs", "1", "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "finite-difference check" in out and "| dense 64-128-10 |" in out
