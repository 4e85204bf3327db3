"""The tuning cache (calibration and autotune files): bad entries and malformed or
unusable files are warned about and ignored, temporary and lock files are safe,
the cache folder's location, autotune measuring each key once, several processes
sharing the files, one file per thread count."""
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
from _helpers import OUTSIDE_TREE, PACKAGE_PARENT, run_child, run_outside_tree
from _helpers import dispatch_spec as spec

import fastconv
from fastconv import _cpu, _dispatch, _tuning
from fastconv import reference as ref

# Every test starts from the default options (another may have loaded a config file).
pytestmark = pytest.mark.usefixtures("default_options")


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
                         text=True, cwd=PACKAGE_PARENT)
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

    def fake_measure(op, spec, names, opts, budget_s=None):
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
        rc, out, err = run_child("import fastconv; print(fastconv.clear_cache())",
                                 env={"FASTCONV_CACHE_DIR": str(cache)})
        assert rc == 0, err
        assert fastconv.explain("forward", x.shape, w.shape).decided_by == "cost-model"


def _tuning_file(folder, threads=None):
    return folder / f"tuning-{_cpu.level()}-t{threads or fastconv.get_config().threads}.json"


AUTOTUNE = """
import numpy as np, fastconv
from fastconv import _dispatch
fastconv.set_config(mode="{mode}")
x = np.random.default_rng(0).standard_normal((2, 3, 10, 9)).astype(np.float32)
w = np.ones((4, 3, 3, 2), np.float32)
fastconv.conv2d(x, w, padding=1)
d = fastconv.explain("forward", x.shape, w.shape, padding=1)
print(d.decided_by, d.strategy)
"""


def test_autotune_cache_persists_across_processes(tmp_path):
    env = {"FASTCONV_CACHE_DIR": str(tmp_path)}
    r = run_outside_tree(AUTOTUNE.format(mode="autotune"), env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "tuning-cache"
    data = json.loads(_tuning_file(tmp_path).read_text())
    assert data["validators"]["threads"] >= 1 and len(data["entries"]) == 1
    entry = next(iter(data["entries"].values()))
    timings = entry["seconds"]  # what autotune measured per strategy (not checked: noisy)
    assert entry["strategy"] in fastconv.strategies() and set(timings) <= set(fastconv.strategies())
    assert entry["strategy"] in timings
    # a new process in cache-only mode uses the entry without measuring
    r = run_outside_tree(AUTOTUNE.format(mode="cache-only"), env)
    assert r.stdout.split() == ["tuning-cache", entry["strategy"]], r.stderr


def test_validator_mismatch_ignores_file(tmp_path):
    env = {"FASTCONV_CACHE_DIR": str(tmp_path)}
    assert run_outside_tree(AUTOTUNE.format(mode="autotune"), env).returncode == 0
    path = _tuning_file(tmp_path)
    data = json.loads(path.read_text())
    data["validators"]["numpy"] = "0.0.1"
    path.write_text(json.dumps(data))
    r = run_outside_tree(AUTOTUNE.format(mode="cache-only"), env)
    assert r.stdout.split()[0] == "cost-model", r.stderr


def test_corrupt_file_is_survived_and_rebuilt(tmp_path):
    env = {"FASTCONV_CACHE_DIR": str(tmp_path)}
    _tuning_file(tmp_path).write_text('{"format": 1, "entries": {"trunc')
    r = run_outside_tree(AUTOTUNE.format(mode="autotune"), env)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("ignoring unreadable cache file") == 1
    assert r.stdout.split()[0] == "tuning-cache"
    assert len(json.loads(_tuning_file(tmp_path).read_text())["entries"]) == 1


CONCURRENT = """
import numpy as np, fastconv
fastconv.set_config(mode="autotune")
for k in range({start}, {start} + 6):
    fastconv.conv1d(np.ones((1, 2, 40 + k)), np.ones((3, 2, 3)))
"""


def test_two_processes_tuning_at_once_leave_a_valid_file(tmp_path):
    env = {**os.environ, "FASTCONV_CACHE_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT.format(start=s)], env=env,
                              cwd=OUTSIDE_TREE, stderr=subprocess.PIPE, text=True) for s in (0, 100)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    data = json.loads(_tuning_file(tmp_path).read_text())
    assert len(data["entries"]) == 12  # the lock makes the merges lose nothing
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_thread_counts_keep_separate_tuning_files(fakes):
    s = spec()
    with fastconv.config(mode="autotune", n_threads=1):
        assert _dispatch.decide("forward", s).decided_by == "tuning-cache"
    with fastconv.config(mode="autotune", n_threads=2):
        assert _dispatch.decide("forward", s).decided_by == "tuning-cache"
    with fastconv.config(mode="cache-only", n_threads=1):
        _dispatch.clear_memo()
        assert _dispatch.decide("forward", s).decided_by == "tuning-cache"
    folder = _tuning.cache_dir()
    lv = _cpu.level()
    assert sorted(os.listdir(folder)) == [f"tuning-{lv}-t1.json", f"tuning-{lv}-t1.json.lock",
                                          f"tuning-{lv}-t2.json", f"tuning-{lv}-t2.json.lock"]
