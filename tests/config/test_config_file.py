"""Config files (TOML, pyproject's [tool.fastconv], $FASTCONV_CONFIG): their
options and rules, the errors that name the file and the key, problems at import
warned about and never breaking it, the documented examples valid."""
from __future__ import annotations

import json
import os

import pytest
from _helpers import REPO_ROOT, FakeStrategy, run_child, run_outside_tree
from _helpers import dispatch_spec as spec

import fastconv
from fastconv import _dispatch
from fastconv._configfile import ConfigError, read_config_file
from fastconv._resources import max_threads

EXAMPLE = os.path.join(REPO_ROOT, "docs", "fastconv.example.toml")


@pytest.mark.usefixtures("default_options")
def test_env_threads_and_bad_config_files_at_import(tmp_path):
    """OMP_NUM_THREADS huge is clamped; FASTCONV_CONFIG problems warn, never break import."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    files = {
        "missing": str(tmp_path / "nope.toml"),
        "binary": tmp_path / "bin.toml",
        "utf16": tmp_path / "u16.toml",
        "deep": tmp_path / "deep.toml",
        "tool_int": tmp_path / "a" / "pyproject.toml",
        "fastconv_int": tmp_path / "b" / "pyproject.toml",
        "huge_threads": tmp_path / "h.toml",
        "dir": str(tmp_path),
        "devzero": "/dev/zero",
    }
    files["binary"].write_bytes(bytes(range(256)) * 4)
    files["utf16"].write_bytes('mode = "heuristic"\n'.encode("utf-16"))
    files["deep"].write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    for key, text in (("tool_int", "tool = 1\n"), ("fastconv_int", "[tool]\nfastconv = 5\n")):
        files[key].parent.mkdir()
        files[key].write_text(text)
    files["huge_threads"].write_text(f"n_threads = {2**63 - 1}\n")
    code = f"""
    import os, warnings
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        import numpy as np, fastconv
        from fastconv._resources import default_threads
        from fastconv._configfile import load_env_config
        assert any("FASTCONV_CONFIG" in str(r.message) for r in rec), [str(r.message) for r in rec]
        assert default_threads() == {max_threads()}, default_threads()
        assert any("OMP_NUM_THREADS" in str(r.message) for r in rec)
    for name, path in {json.dumps({k: str(v) for k, v in files.items()})}.items():
        os.environ["FASTCONV_CONFIG"] = path
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            load_env_config()
        msgs = [str(r.message) for r in rec]
        assert len(msgs) == 1 and "FASTCONV_CONFIG ignored" in msgs[0], (name, msgs)
        print("warned", name)
    y = fastconv.conv2d(np.ones((1, 1, 8, 8)), np.ones((1, 1, 3, 3)))
    print("call ok", y.shape)
    """
    env = {"OMP_NUM_THREADS": "100000", "FASTCONV_CONFIG": str(fifo)}
    rc, out, err = run_child(code, env=env, timeout=60)
    assert rc == 0, err[-3000:]
    assert out.count("warned") == len(files) and "call ok" in out, out


def test_rule_range_min_above_max(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[[rules]]\nstrategy = 'direct'\nkernel = {min = 10, max = 5}\n")
    with pytest.raises(ConfigError, match="kernel"):
        read_config_file(path)


def test_example_config_loads_and_applies(fakes, monkeypatch):
    monkeypatch.setitem(fakes, "im2col", FakeStrategy("im2col", 1.0))
    values = read_config_file(EXAMPLE)
    assert values["memory_budget"] == 512 * 2**20
    assert [r.strategy for r in values["rules"]] == ["im2col", "fft", "fft"]
    with fastconv.config(**values):
        d = _dispatch.decide("forward", spec(weight_shape=(6, 4, 1, 1)))
        assert (d.strategy, d.decided_by) == ("im2col", "config-rule")
        assert "rules[0]" in d.detail


@pytest.mark.parametrize("text, match", [
    ("mode = 'fastest'", "mode"),
    ("bogus = 1", "bogus"),
    ("n_threads = 'two'", "n_threads"),
    ("memory_budget = 'lots'", "memory_budget"),
    ("allow_fft = 1", "allow_fft"),
    ("[[rules]]\nstrategy = 'wavelet'", "wavelet"),
    ("[[rules]]\nkernel = 3", "strategy"),
    ("[[rules]]\nstrategy = 'direct'\nkernel = 'big'", "kernel"),
    ("[[rules]]\nstrategy = 'direct'\ncolour = 'red'", "colour"),
    ("[[rules]]\nstrategy = 'direct'\nop = 'backward'", "op"),
    ("mode = ", "syntax"),
])
def test_bad_config_file(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        fastconv.load_config(path)
    assert str(path) in str(e.value)


def test_pyproject_tool_table(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text("[project]\nname='x'\n[tool.fastconv]\nmemory_budget = '1GiB'\n"
                    "[[tool.fastconv.rules]]\nstrategy = 'direct'\n")
    values = read_config_file(path)
    assert values["memory_budget"] == 2**30 and values["rules"][0].strategy == "direct"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pyproject.toml").write_text("[project]\nname='x'\n")
    with pytest.raises(ConfigError, match="tool.fastconv"):
        read_config_file(tmp_path / "sub" / "pyproject.toml")


def test_load_config_is_process_wide(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("memory_budget = 12345\n")
    old = fastconv.get_config()
    try:
        fastconv.load_config(path)
        assert fastconv.get_config().memory_budget == 12345
        import threading

        seen = []
        t = threading.Thread(target=lambda: seen.append(fastconv.get_config().memory_budget))
        t.start()
        t.join()
        assert seen == [12345]
    finally:
        fastconv.set_config(memory_budget=old.memory_budget)


def test_env_config_read_at_import(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("memory_budget = '3MiB'\nallow_fft = false\n")
    r = run_outside_tree(
        "import fastconv; c = fastconv.get_config(); print(c.memory_budget, c.allow_fft)",
        {"FASTCONV_CONFIG": str(path)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(3 * 2**20), "False"]


def test_readme_config_example_is_valid(tmp_path):
    readme = os.path.join(REPO_ROOT, "README.md")
    if not os.path.exists(readme):
        pytest.skip("README.md not beside the tests")
    text = open(readme).read()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.toml"
    path.write_text(block)
    values = read_config_file(path)
    assert values["mode"] == "autotune" and values["rules"][0].strategy == "fft"
