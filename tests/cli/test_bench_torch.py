"""fastconv.bench.suite_torch on tiny blocks: the report, the same weights, equal losses."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from fastconv.bench import suite_torch  # noqa: E402


def test_run_suite_writes_a_markdown_section(tmp_path):
    path = suite_torch.run_suite(tmp_path / "out", size="tiny", n_threads=1, progress=False)
    assert path == tmp_path / "out" / "torch.md" and path.exists()
    text = path.read_text()
    assert text.startswith("## PyTorch training step")
    assert "load average" in text and "1 thread(s)" in text
    rows = [line for line in text.splitlines() if line.startswith("| long-causal")
            or line.startswith("| depthwise-k31")]
    assert len(rows) == 2


def test_measure_converts_every_conv_and_matches_torch():
    r = suite_torch.measure("long-causal", "tiny", rounds=1, n_threads=1)
    assert r["swapped"] == ["body.1", "body.3"]
    assert len(r["torch_s"]) == len(r["fastconv_s"]) == 1
    assert r["loss_rel_diff"] < 1e-4 and r["grad_rel_diff"] < 1e-4
    with pytest.raises(ValueError, match="size"):
        suite_torch.run_suite("unused", size="huge")
