"""Regression tests of the hardening audit: threads, budgets, config and cache files,
validation, empty batches, non-finite results. Anything that could crash or hang
runs in a child process (a few interpreters, each running many cases)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

import fastconv
from fastconv import _cpu
import fastconv.grad as fgrad
from fastconv import _dispatch, _tuning, reference as ref
from fastconv._config import max_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))


@pytest.fixture(autouse=True)
def _default_options(monkeypatch):
    """Each test starts from the default process-wide options (another test may
    have loaded a config file) and leaves them as it found them."""
    from fastconv import _config

    monkeypatch.setattr(_config, "_global", _config.Options())
    _dispatch.clear_memo()
    yield
    _dispatch.clear_memo()


def _child(code, env=None, cwd=None, timeout=120):
    """Run ``code`` in a fresh interpreter; (returncode, stdout, stderr)."""
    full_env = dict(os.environ, **(env or {}))
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, env=full_env, cwd=cwd or ROOT, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


# ---------------------------------------------------------------------------
# 1. thread counts are refused before any kernel sees them
# ---------------------------------------------------------------------------
def test_huge_thread_counts_never_reach_a_kernel(tmp_path):
    cfg = tmp_path / "t.toml"
    code = f"""
    import numpy as np, fastconv
    from fastconv import ConfigError
    x = np.ones((1, 1, 8, 8), np.float32); w = np.ones((1, 1, 3, 3), np.float32)
    for n in (100_000, 40_000, 2**31, 2**63 - 1, {max_threads() + 1}):
        try:
            with fastconv.config(n_threads=n):
                fastconv.conv2d(x, w, stride=2, strategy="direct")
            print("accepted", n)
        except ValueError as e:
            assert "n_threads" in str(e), e
            print("refused", n)
    for n in (100_000, 2**63 - 1):
        open({str(cfg)!r}, "w").write(f"n_threads = {{n}}\\n")
        try:
            fastconv.load_config({str(cfg)!r})
            print("accepted file", n)
        except ConfigError as e:
            assert "n_threads" in str(e), e
            print("refused file", n)
    # the largest accepted count runs every strategy and op
    gy = np.ones((1, 1, 3, 3), np.float32)
    with fastconv.config(n_threads={max_threads()}):
        for s in fastconv.strategies():
            try:
                fastconv.conv2d(x, w, stride=2, strategy=s)
                fastconv.conv_backward(x, w, gy, stride=2, strategy=s)
            except ValueError as e:  # a strategy without strided support
                assert "cannot run" in str(e), e
    print("ran all")
    """
    rc, out, err = _child(code)
    assert rc == 0, err[-2000:]
    assert "accepted" not in out, out
    assert out.count("refused") == 7 and "ran all" in out, out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_runs_every_strategy_on_one_thread():
    """A child forked after a multi-threaded call hung in its first OpenMP loop
    (libgomp cannot start threads after fork): it now runs on one thread, warns
    once when more were asked for, and computes the same values."""
    code = """
    import os, warnings, numpy as np, fastconv
    from fastconv import reference as ref
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    want = ref.conv_forward(x, w, padding=1)
    with fastconv.config(n_threads=2):
        for s in fastconv.strategies():                 # the parent's OpenMP team exists
            fastconv.conv2d(x, w, padding=1, strategy=s)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for n in (None, 2):
                    with fastconv.config(n_threads=n):
                        assert fastconv.get_config().threads == 1
                        for s in fastconv.strategies():
                            y = fastconv.conv2d(x, w, padding=1, strategy=s)
                            assert np.abs(y - want).max() <= 1e-3 * np.abs(want).max(), s
            msgs = [str(c.message) for c in caught if "forked" in str(c.message)]
            assert len(msgs) == 1, msgs
        except BaseException as e:
            print("child failed:", repr(e), flush=True)
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print("child status", status)
    """
    rc, out, err = _child(code, timeout=90)
    assert rc == 0, err[-2000:]
    assert "child status 0" in out, out + err[-2000:]


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
        from fastconv._config import default_threads
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
    rc, out, err = _child(code, env=env, timeout=60)
    assert rc == 0, err[-3000:]
    assert out.count("warned") == len(files) and "call ok" in out, out


def test_cli_tune_clear_works_with_a_broken_config(tmp_path):
    env = {"FASTCONV_CONFIG": str(tmp_path / "missing.toml"),
           "FASTCONV_CACHE_DIR": str(tmp_path / "cache")}
    rc, out, err = _child("from fastconv.cli import main; main(['tune', '--clear'])", env=env)
    assert rc == 0, err[-2000:]


def test_default_threads_follows_omp_num_threads(monkeypatch):
    from fastconv._config import cpu_limit, default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2,1")  # nested levels: the outer one
    assert default_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "garbage")
    assert default_threads() == cpu_limit()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= default_threads() == cpu_limit() <= os.cpu_count()


def test_cgroup_quota_caps_cpu_limit(monkeypatch):
    from fastconv import _config

    monkeypatch.setattr(_config, "_cgroup_cpu_quota", lambda: 1)
    assert _config.cpu_limit() == 1


# ---------------------------------------------------------------------------
# 2(a). an output that cannot fit in memory: MemoryError before allocating
# ---------------------------------------------------------------------------
def test_output_larger_than_available_memory_raises_memoryerror():
    # a 400,000 x 400,000 float64 output: 1.2 TiB
    with pytest.raises(MemoryError, match=r"output needs \d+ bytes.*available"):
        fastconv.conv2d(np.ones((1, 1, 8, 8)), np.ones((1, 1, 3, 3)), padding=200_000)
    with pytest.raises(MemoryError, match=r"grad_input needs \d+ bytes.*available"):
        fastconv.grad_input((1, 1, 400_000, 400_000), np.ones((1, 1, 3, 3)),
                            np.ones((1, 1, 1, 1)), stride=400_000)


def test_forced_strategy_over_budget_raises_with_numbers():
    """A forced strategy that cannot fit raises with the numbers; one that fits runs."""
    from fastconv import _strategies

    x, w = np.ones((2, 4, 64, 64)), np.ones((4, 4, 3, 3))
    spec = fastconv.make_spec(x.shape, w.shape, padding=1)
    raised = 0
    for s in fastconv.strategies():
        with fastconv.config(memory_budget=1024):
            need = _dispatch.total_workspace(_strategies.get(s), spec, "forward")
            if need > 1024:
                raised += 1
                with pytest.raises(MemoryError, match=r"needs \d+ bytes.*budget is 1024 bytes"):
                    fastconv.conv2d(x, w, padding=1, strategy=s)
            else:  # e.g. a strategy that pads inside with no scratch
                fastconv.conv2d(x, w, padding=1, strategy=s)
    assert raised >= 1


def test_padded_copies_count_against_the_budget(monkeypatch):
    """2(b): for a strategy that does not pad inside, the padded input copy (and the
    padded grad_input it returns) is workspace; a chunking strategy plans within
    what the copies leave of the budget."""
    from fastconv import _strategies

    seen = {}

    class NoPad:
        name = "nopad"

        def supports(self, spec, op):
            return None

        def workspace(self, spec, op):
            return 1000

        def estimate(self, spec, op, n_threads=1):
            return 1e-9  # the cheapest: auto picks it whenever it fits

        def run(self, op, spec, a, b, n_threads):
            seen[op] = (a.shape, fastconv.get_config().memory_budget)
            shape = {"forward": spec.output_shape5, "grad_input": spec.padded_shape5,
                     "grad_weight": spec.weight_shape5}[op]
            return np.zeros(shape, spec.dtype)

    monkeypatch.setitem(_strategies._REGISTRY, "nopad", NoPad())
    _dispatch.clear_memo()
    x, w = np.ones((2, 4, 30, 30), np.float32), np.ones((4, 4, 3, 3), np.float32)
    spec = fastconv.make_spec(x.shape, w.shape, padding=5, dtype=np.float32)
    padded = 2 * 4 * 40 * 40 * 4
    assert _dispatch.prep_bytes(NoPad(), spec, "forward") == padded
    assert _dispatch.prep_bytes(NoPad(), spec, "grad_input") == padded
    assert _dispatch.prep_bytes(NoPad(), spec, "backward") == 2 * padded
    NoPad.pads_inside = True
    assert _dispatch.prep_bytes(NoPad(), spec, "forward") == 0
    del NoPad.pads_inside
    with fastconv.config(memory_budget=padded + 999):
        with pytest.raises(MemoryError, match=rf"{padded} bytes of padded copies"):
            fastconv.conv2d(x, w, padding=5, strategy="nopad")
        d = fastconv.explain("forward", x.shape, w.shape, padding=5)
        assert d.strategy != "nopad"
        assert "padded copies" in next(c for c in d.candidates if c.name == "nopad").excluded
    with fastconv.config(memory_budget=padded + 5000):
        assert fastconv.explain("forward", x.shape, w.shape, padding=5).strategy == "nopad"
        fastconv.conv2d(x, w, padding=5, strategy="nopad")
    assert seen["forward"] == ((2, 4, 1, 40, 40), 5000)  # padded input; the budget left over
    _dispatch.clear_memo()


# ---------------------------------------------------------------------------
# 3, 4, 8, 9, 17: the cache
# ---------------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder and no remembered decisions or warnings."""
    d = tmp_path / "cache"
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(d))
    monkeypatch.setattr(_tuning, "_warned", set())
    _dispatch.clear_memo()
    yield d
    _dispatch.clear_memo()


def _write_cache(cache_dir, name, entries, threads):
    cache_dir.mkdir(exist_ok=True)
    path = cache_dir / f"{name}-{_cpu.level()}-t{threads}.json"
    body = {"format": _tuning.FORMAT, "validators": _tuning.validators(threads),
            "entries": entries}
    path.write_text(json.dumps(body) if not isinstance(entries, str) else entries)
    return path


BAD_CALIBRATION = [
    {"direct|forward|2d|float32": "1.5"},
    {"direct|forward|overhead": None},
    {"im2col|forward|2d|float32": float("nan")},
    {"fft|forward|2d|float32": -2.0},
    {"fft|forward|2d|float32": 0.0},
    {"direct|forward|overhead": -1e-3},
    {"direct|forward|2d|float32": [1.0]},
    {"direct|forward|2d|float32": True},
]
BAD_TUNING = [[1, 2], "direct", {"strategy": ["direct"], "seconds": {}},
              {"strategy": "direct", "seconds": {"direct": "0.1"}},
              {"strategy": "direct"}, {"strategy": "direct", "seconds": [1.0]},
              {"strategy": "direct", "seconds": {"direct": float("inf")}}]


def _conv_args():
    return np.ones((1, 2, 10, 10), np.float32), np.ones((3, 2, 3, 3), np.float32)


@pytest.mark.parametrize("entries", BAD_CALIBRATION, ids=range(len(BAD_CALIBRATION)))
def test_bad_calibration_entries_are_ignored_with_one_warning(cache, entries):
    threads = fastconv.get_config().threads
    path = _write_cache(cache, "calibration", entries, threads)
    x, w = _conv_args()
    with pytest.warns(RuntimeWarning, match="wrong entry") as rec:
        y = fastconv.conv2d(x, w)
        _dispatch.clear_memo()
        fastconv.conv2d(x, w)
    assert sum("fastconv" in str(r.message) for r in rec) == 1, [str(r.message) for r in rec]
    assert str(path) in str(rec[0].message)
    np.testing.assert_allclose(y, ref.conv_forward(x, w), rtol=1e-5)


@pytest.mark.parametrize("mode", ["autotune", "cache-only"])
@pytest.mark.parametrize("entry", BAD_TUNING, ids=range(len(BAD_TUNING)))
def test_bad_tuning_entries_are_ignored(cache, mode, entry, monkeypatch):
    monkeypatch.setattr(_tuning, "time_call", lambda fn, **kw: (fn(), 1e-3)[1])
    x, w = _conv_args()
    spec = fastconv.make_spec(x.shape, w.shape, dtype=np.float32)
    threads = fastconv.get_config().threads
    key = _tuning.problem_key("forward", spec, threads)
    _write_cache(cache, "tuning", {key: entry}, threads)
    with fastconv.config(mode=mode), warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        y = fastconv.conv2d(x, w)
    assert any("wrong entry" in str(r.message) for r in rec)
    np.testing.assert_allclose(y, ref.conv_forward(x, w), rtol=1e-5)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "\xff\xfe garbage", "{}",
                                  '{"entries": 5}'])
def test_malformed_cache_files_are_ignored(cache, text):
    path = _write_cache(cache, "calibration", text, fastconv.get_config().threads)
    with pytest.warns(RuntimeWarning, match=str(path.name)):
        fastconv.conv2d(*_conv_args())


def _unusable_cache_dirs(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    tuning_dir = tmp_path / "tuning_is_dir"
    (tuning_dir / f"tuning-{_cpu.level()}-t{fastconv.get_config().threads}.json").mkdir(parents=True)
    lock_dir = tmp_path / "lock_is_dir"
    (lock_dir / f"tuning-{_cpu.level()}-t{fastconv.get_config().threads}.json.lock").mkdir(parents=True)
    return {"is_file": f, "under_file": f / "sub", "under_proc": "/proc/fastconv-cache",
            "tuning_is_dir": tuning_dir, "lock_is_dir": lock_dir}


def test_autotune_with_unusable_cache_folders_warns_and_computes(tmp_path, monkeypatch):
    monkeypatch.setattr(_tuning, "time_call", lambda fn, **kw: (fn(), 1e-3)[1])
    x, w = _conv_args()
    want = ref.conv_forward(x, w)
    for name, d in _unusable_cache_dirs(tmp_path).items():
        monkeypatch.setattr(_tuning, "_warned", set())
        _dispatch.clear_memo()
        with fastconv.config(mode="autotune", cache_dir=str(d)):
            with warnings.catch_warnings(record=True) as rec:
                warnings.simplefilter("always")
                for _ in range(3):
                    y = fastconv.conv2d(x, w)
        msgs = [str(r.message) for r in rec if "fastconv" in str(r.message)]
        assert 1 <= len(msgs) <= 2, (name, msgs)  # one for reading, one for writing at most
        np.testing.assert_allclose(y, want, rtol=1e-5, err_msg=name)
    _dispatch.clear_memo()


def test_stale_temporary_files_are_removed(cache, monkeypatch):
    """SIGKILL during a write leaves a temporary file: the next write and clear remove it."""
    opts = fastconv.get_config()
    path = _tuning.tuning_cache.path(opts)
    code = f"""
    import os, fastconv
    from fastconv import _tuning
    os.environ["FASTCONV_CACHE_DIR"] = {str(cache)!r}
    opts = fastconv.get_config()
    big = {{f"k{{i}}": {{"strategy": "direct", "seconds": {{"direct": 1.0}}}} for i in range(200_000)}}
    print("go", flush=True)
    while True:
        _tuning.tuning_cache.store(opts, big)
    """
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                         text=True, cwd=ROOT)
    p.stdout.readline()
    deadline = time.time() + 30
    while time.time() < deadline and not list(cache.glob(".tmp-*")):
        time.sleep(0.01)
    p.kill()
    p.wait()
    p.stdout.close()
    # a second leftover, as from another killed writer
    (cache / f".tmp-{os.path.basename(path)}-dead.json").write_text("{")
    assert list(cache.glob(".tmp-*"))
    assert _tuning.tuning_cache.store(opts, {"k": {"strategy": "direct",
                                                   "seconds": {"direct": 1.0}}})
    assert not list(cache.glob(".tmp-*"))
    (cache / f".tmp-{os.path.basename(path)}-dead.json").write_text("{")
    removed = fastconv.clear_cache()
    assert path in removed and path + ".lock" in removed
    assert not list(cache.iterdir())


def test_lock_symlink_is_not_followed(cache, tmp_path):
    opts = fastconv.get_config()
    path = _tuning.tuning_cache.path(opts)
    cache.mkdir()
    target = tmp_path / "elsewhere"
    os.symlink(target, path + ".lock")
    with pytest.warns(RuntimeWarning, match="symbolic link"):
        assert not _tuning.tuning_cache.store(opts, {"k": {"strategy": "direct",
                                                            "seconds": {}}})
    assert not target.exists()


def test_relative_cache_dir_is_fixed_when_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with fastconv.config(cache_dir="rel") as opts:
        first = _tuning.cache_dir(opts)
        monkeypatch.chdir("/")
        assert _tuning.cache_dir(fastconv.get_config()) == first == str(tmp_path / "rel")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASTCONV_CACHE_DIR", "envrel")
    first = _tuning.cache_dir()
    monkeypatch.chdir("/")
    assert _tuning.cache_dir() == first == str(tmp_path / "envrel")


def test_default_cache_dir_is_the_linux_one(monkeypatch):
    monkeypatch.delenv("FASTCONV_CACHE_DIR", raising=False)
    monkeypatch.setattr(_tuning, "_env_dirs", {})
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    if sys.platform.startswith("linux"):
        assert _tuning.cache_dir() == os.path.join(os.path.abspath(xdg), "fastconv")


def test_autotune_measures_each_key_once_across_threads(cache, monkeypatch):
    calls, inside, overlap = [], [0], []

    def fake_measure(op, spec, names, threads, budget_s=None):
        inside[0] += 1
        overlap.append(inside[0])
        time.sleep(0.05)
        calls.append(op)
        inside[0] -= 1
        return {n: 1e-3 * (i + 1) for i, n in enumerate(names)}

    monkeypatch.setattr(_tuning, "measure", fake_measure)
    x, w = _conv_args()
    errors = []

    def work():
        try:
            with fastconv.config(mode="autotune"):
                fastconv.conv2d(x, w)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert calls == ["forward"] and max(overlap) == 1


def test_decision_memo_sees_cache_changes_by_other_processes(cache):
    x, w = _conv_args()
    spec = fastconv.make_spec(x.shape, w.shape, dtype=np.float32)
    threads = fastconv.get_config().threads
    key = _tuning.problem_key("forward", spec, threads)
    other = "im2col" if fastconv.explain("forward", x.shape, w.shape).strategy != "im2col" \
        else "direct"
    entry = {"strategy": other, "seconds": {other: 1e-6}}
    with fastconv.config(mode="cache-only"):
        before = fastconv.explain("forward", x.shape, w.shape).decided_by
        assert before == "cost-model"
        time.sleep(0.01)
        _write_cache(cache, "tuning", {key: entry}, threads)   # "another process" tunes
        time.sleep(1.1 * _tuning.SIGNATURE_TTL_S)  # files are stat'ed at most this often
        d = fastconv.explain("forward", x.shape, w.shape)
        assert (d.decided_by, d.strategy) == ("tuning-cache", other)
        rc, out, err = _child("import fastconv; print(fastconv.clear_cache())",
                              env={"FASTCONV_CACHE_DIR": str(cache)})
        assert rc == 0, err
        assert fastconv.explain("forward", x.shape, w.shape).decided_by == "cost-model"


# ---------------------------------------------------------------------------
# 6. BLAS thread counts survive overlapping calls
# ---------------------------------------------------------------------------
def test_blas_limit_overlapping_contexts_restore():
    from fastconv._threads import blas_limit, blas_threads

    before = blas_threads()
    a, b = blas_limit(1), blas_limit(2)
    a.__enter__()
    b.__enter__()
    assert set(blas_threads().values()) <= {1}
    a.__exit__(None, None, None)  # leave in the "wrong" order
    assert set(blas_threads().values()) <= {2, *before.values()}
    b.__exit__(None, None, None)
    assert blas_threads() == before


# ---------------------------------------------------------------------------
# 7(b). float32 FFT overflow: auto does not pick FFT into it
# ---------------------------------------------------------------------------
def test_auto_avoids_float32_fft_overflow():
    rng = np.random.default_rng(0)
    x = rng.random((2, 8, 64, 64)).astype(np.float32)
    w = rng.random((8, 8, 31, 31)).astype(np.float32)
    assert fastconv.explain("forward", x.shape, w.shape, padding=15).strategy == "fft"
    big_x, big_w = x * np.float32(1e17), w * np.float32(1e17)
    with np.errstate(over="ignore", invalid="ignore"):
        forced = fastconv.conv2d(big_x, big_w, padding=15, strategy="fft")
    assert not np.isfinite(forced).all()          # the defect: FFT overflows ...
    y = fastconv.conv2d(big_x, big_w, padding=15)  # ... auto must not
    want = ref.conv_forward(big_x.astype(np.float64), big_w.astype(np.float64), padding=15)
    assert np.isfinite(want).all() and np.abs(want).max() < np.finfo(np.float32).max
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # ordinary magnitudes still go to FFT
    gy = rng.random((2, 8, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(fastconv.conv2d(x, w, padding=15),
                               ref.conv_forward(x, w, padding=15), rtol=1e-3, atol=1e-3)
    gx, gw, _ = fastconv.conv_backward(big_x, big_w, gy, padding=15)
    assert np.isfinite(gx).all() and np.isfinite(gw).all()


def test_auto_avoids_float32_winograd_overflow():
    # winograd's transforms grow values (F(4x4): up to 10x per axis on the input
    # tiles, 19x on the outputs): float32 overflowed inside the call where the
    # exact result was 10x below float32's largest value and direct was finite
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((8, 64, 32, 32)) * 3e35).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    assert fastconv.explain("forward", x.shape, w.shape, padding=1).strategy == "winograd"
    with np.errstate(over="ignore", invalid="ignore"):
        forced = fastconv.conv2d(x, w, padding=1, strategy="winograd")  # still runs
    assert not np.isfinite(forced).all()
    y = fastconv.conv2d(x, w, padding=1)
    want = fastconv.conv2d(x, w, padding=1, strategy="direct")
    assert np.isfinite(want).all() and np.isfinite(y).all()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())

    x = (rng.standard_normal((4, 32, 24, 24)) * 1e18).astype(np.float32)
    gy = (rng.standard_normal((4, 32, 24, 24)) * 1e17).astype(np.float32)
    ws = (32, 32, 3, 3)
    assert fastconv.explain("grad_weight", x.shape, ws, padding=1).strategy == "winograd"
    with np.errstate(over="ignore", invalid="ignore"):
        forced = fastconv.grad_weight(x, ws, gy, padding=1, strategy="winograd")
    assert not np.isfinite(forced).any()
    want = fastconv.grad_weight(x, ws, gy, padding=1, strategy="direct")
    for gw in (fastconv.grad_weight(x, ws, gy, padding=1),
               fastconv.conv_backward(x, np.ones(ws, np.float32), gy, padding=1)[1]):
        assert np.isfinite(gw).all()
        np.testing.assert_allclose(gw, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_winograd_overflow_guard_leaves_ordinary_magnitudes_alone():
    from fastconv._strategies import winograd as wg

    x = np.random.default_rng(1).standard_normal((8, 64, 32, 32)).astype(np.float32) * 1e6
    w = np.ones((64, 64, 3, 3), np.float32)
    s, _ = fastconv._api._choose("forward", fastconv.make_spec(x.shape, w.shape, padding=1),
                                 "auto", x, w)
    assert s.name == "winograd"
    # the bound covers the channel sums: it grows with the channels per group
    spec = fastconv.make_spec((1, 64, 8, 8), (64, 64, 3, 3), padding=1)
    dw = fastconv.make_spec((1, 64, 8, 8), (64, 1, 3, 3), padding=1, groups=64)
    assert wg.overflow_factor(spec, "forward", 2) == 64 * wg.overflow_factor(dw, "forward", 2)


# ---------------------------------------------------------------------------
# 10, 16. validation of options and arguments
# ---------------------------------------------------------------------------
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


def test_bad_arguments():
    x, w = np.ones((1, 1, 8, 8)), np.ones((1, 1, 3, 3))
    with pytest.raises(TypeError, match="padding"):
        fastconv.conv2d(x, w, padding={0: 1, 1: 1})
    with pytest.raises(TypeError, match="stride"):
        fastconv.conv2d(x, w, stride={1, 2})
    with pytest.raises(TypeError, match="ndim"):
        fastconv.grad_input((1, 1, 8, 8), w, np.ones((1, 1, 6, 6)), ndim=2.0)
    with pytest.warns(RuntimeWarning, match="float64"):
        y = fastconv.conv2d(x.astype(np.longdouble), w)
    assert y.dtype == np.float64
    # an array where a shape was expected: type and shape, not 80 lines of numbers
    with pytest.raises((TypeError, ValueError)) as e:
        fastconv.conv2d(x, w, stride=np.ones((100, 100)))
    assert "shape (100, 100)" in str(e.value) and len(str(e.value)) < 300
    with pytest.raises(TypeError) as e:
        fastconv.grad_input(np.ones((50, 50)), w, np.ones((1, 1, 6, 6)))
    assert len(str(e.value)) < 300


def test_explain_explains_when_nothing_fits(monkeypatch):
    # every strategy needs more than the budget (whatever their real scratch)
    monkeypatch.setattr(_dispatch, "total_workspace", lambda *a, **k: 1 << 40)
    _dispatch.clear_memo()
    with fastconv.config(memory_budget=16):
        d = fastconv.explain("forward", (4, 8, 64, 64), (8, 8, 3, 3), padding=1)
    _dispatch.clear_memo()
    assert d.strategy is None and d.decided_by == "nothing-fits"
    assert all(c.excluded for c in d.candidates) and "budget" in d.detail
    str(d)


# ---------------------------------------------------------------------------
# 12. torch.nn.grad argument names; 13. empty batches
# ---------------------------------------------------------------------------
def test_grad_functions_accept_documented_and_torch_names():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 2))
    gy = rng.standard_normal(fastconv.output_shape(x.shape, w.shape, padding=1))
    want_x = ref.conv_grad_input(x.shape, w, gy, padding=1)
    want_w = ref.conv_grad_weight(x, w.shape, gy, padding=1)
    for got in (fgrad.conv2d_input(input_shape=x.shape, weight=w, grad_output=gy, padding=1),
                fgrad.conv2d_input(input_size=x.shape, weight=w, grad_output=gy, padding=1),
                fgrad.conv2d_input(x.shape, w, gy, 1, 1)):
        np.testing.assert_allclose(got, want_x, atol=1e-10)
    for got in (fgrad.conv2d_weight(input=x, weight_shape=w.shape, grad_output=gy, padding=1),
                fgrad.conv2d_weight(x, weight_size=w.shape, grad_output=gy, padding=1),
                fgrad.conv2d_weight(x, w.shape, gy, 1, 1)):
        np.testing.assert_allclose(got, want_w, atol=1e-10)
    with pytest.raises(TypeError, match="both"):
        fgrad.conv2d_input(x.shape, w, gy, input_size=x.shape)
    with pytest.raises(TypeError, match="weight_shape"):
        fgrad.conv2d_weight(x, grad_output=gy)


@pytest.mark.parametrize("strategy", ("auto",) + tuple(fastconv.strategies()))
def test_zero_size_batch_follows_pytorch(strategy):
    x, w = np.ones((0, 4, 9, 7), np.float32), np.ones((6, 2, 3, 3), np.float32)
    kw = dict(groups=2, padding=1, strategy=strategy)
    y = fastconv.conv2d(x, w, **kw)
    assert y.shape == (0, 6, 9, 7) and y.dtype == np.float32
    gy = np.ones(y.shape, np.float32)
    gx, gw, gb = fastconv.conv_backward(x, w, gy, **kw)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (6,)
    assert not gw.any() and not gb.any()
    assert fgrad.conv2d_weight(x, w.shape, gy, **kw).shape == w.shape
    assert fgrad.conv2d_input(x.shape, w, gy, **kw).shape == x.shape
    with pytest.raises(ValueError, match="strategy"):
        fastconv.conv2d(x, w, groups=2, strategy="nope")


def test_zero_size_batch_matches_torch():
    torch = pytest.importorskip("torch")
    x, w = torch.zeros((0, 4, 9)), torch.ones((6, 4, 3), requires_grad=True)
    y = torch.nn.functional.conv1d(x, w)
    y.sum().backward()
    ours = fastconv.conv1d(x.numpy(), w.detach().numpy())
    assert ours.shape == tuple(y.shape)
    gw = fastconv.grad_weight(x.numpy(), w.shape, np.zeros(ours.shape, np.float32))
    np.testing.assert_array_equal(gw, w.grad.numpy())


# ---------------------------------------------------------------------------
# 14. importing the unbuilt source tree says what to do
# ---------------------------------------------------------------------------
def test_unbuilt_source_tree_import_message(tmp_path):
    import shutil

    shutil.copytree(os.path.dirname(fastconv.__file__), tmp_path / "fastconv",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    # drop an editable install's finder so the copy is what gets imported
    code = """
    import sys
    sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    import fastconv
    print(fastconv.__file__)
    """
    rc, out, err = _child(code, cwd=str(tmp_path), env={"PYTHONPATH": str(tmp_path)})
    assert rc != 0
    assert "uncompiled source tree" in err and "build_ext --inplace" in err, err[-1500:]
