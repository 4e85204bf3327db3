"""The strategy-selection config file (TOML).

Found through, first that applies: ``fastconv.load_config(path)``; the
``FASTCONV_CONFIG`` environment variable (read when fastconv is imported). A file
named ``pyproject.toml`` is read from its ``[tool.fastconv]`` table; any other
file from its top level. Example (``docs/fastconv.example.toml``)::

    mode = "heuristic"          # "heuristic" | "autotune" | "cache-only"
    memory_budget = "512MiB"    # int bytes, or a string with B/KiB/MiB/GiB/KB/MB/GB
    n_threads = 2
    allow_fft = true
    fft_rtol = 1e-3             # float32 FFT only where its estimated error is below
    winograd_rtol = 1e-5        # winograd only with tiles whose estimated error is below
    fft_max_stride = 2
    cache_dir = "~/.cache/fastconv"
    strategy = "auto"           # or a strategy name forced for every call

    [[rules]]                   # tried in order; the first match decides
    op = ["grad_input", "grad_weight"]    # a value or a list of values
    ndim = 2
    dtype = "float32"
    kernel = [7, 31]            # largest kernel extent in [7, 31]
    strategy = "fft"

    [[rules]]
    kernel = 1                  # 1x1 kernels
    channels = {min = 64}       # input channels >= 64
    strategy = "im2col"

Range keys (``kernel``, ``spatial``, ``channels``, ``out_channels``, ``batch``,
``stride``, ``groups``) take an int, a ``[min, max]`` pair, or a table with
``min`` and/or ``max``; ``kernel``, ``spatial`` and ``stride`` compare the
largest extent over the spatial axes. Errors name the file, the key and what
was expected.
"""
from __future__ import annotations

import os
import stat
import tomllib
import warnings

from ._config import Options
from ._configtypes import _DTYPES, _RANGE_KEYS, _SET_KEYS, ConfigError, Rule, parse_size
from ._spec import OPS

__all__ = ["ConfigError", "Rule", "read_config_file", "parse_size"]


def _range(value, where):
    rng = None
    if isinstance(value, int) and not isinstance(value, bool):
        rng = (value, value)
    elif isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        rng = (value[0], value[1])
    elif isinstance(value, dict) and value and set(value) <= {"min", "max"} and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
        rng = (value.get("min", 0), value.get("max", 2**62))
    if rng is not None:
        if rng[0] > rng[1]:
            raise ConfigError(f"{where}: min {rng[0]} is larger than max {rng[1]}; "
                              "the rule could never match")
        return rng
    raise ConfigError(
        f"{where}: expected an int, a [min, max] pair of ints, or a table with min/max, "
        f"got {value!r}"
    )


def _set(value, allowed, where):
    vals = value if isinstance(value, list) else [value]
    for v in vals:
        if v not in allowed or isinstance(v, bool):
            raise ConfigError(f"{where}: expected one of {list(allowed)} (or a list of them), got {v!r}")
    return tuple(vals)


def _rule(table, where, strategy_names):
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table ([[rules]]), got {table!r}")
    known = {"strategy", *_SET_KEYS, *_RANGE_KEYS}
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {sorted(known)}")
    if "strategy" not in table:
        raise ConfigError(f"{where}: missing key 'strategy' (one of {list(strategy_names)})")
    strategy = table["strategy"]
    if strategy not in strategy_names:
        raise ConfigError(
            f"{where}.strategy: unknown strategy {strategy!r}; expected one of {list(strategy_names)}")
    kw = {"strategy": strategy, "source": where}
    allowed = {"op": OPS, "ndim": (1, 2, 3), "dtype": _DTYPES}
    for key in _SET_KEYS:
        if key in table:
            kw[key] = _set(table[key], allowed[key], f"{where}.{key}")
    for key in _RANGE_KEYS:
        if key in table:
            kw[key] = _range(table[key], f"{where}.{key}")
    return Rule(**kw)


_TYPES = {
    "mode": (str,), "strategy": (str,), "n_threads": (int,), "allow_fft": (bool,),
    "fft_rtol": (int, float), "winograd_rtol": (int, float), "fft_max_stride": (int,), "cache_dir": (str,),
}


MAX_CONFIG_BYTES = 1 << 20


def _read_text(path):
    """The file's text; ConfigError for anything but a readable UTF-8 regular file.

    Checked before reading so that a FIFO (whose ``open`` blocks until a writer
    comes), a device such as ``/dev/zero`` (endless) or a huge file cannot hang
    or exhaust ``import fastconv``.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the fastconv config file: {e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: the fastconv config file is not a regular file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: the fastconv config file is {st.st_size} bytes, more than "
                          f"the {MAX_CONFIG_BYTES} a config file may have")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the fastconv config file: {e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: the fastconv config file is larger than "
                          f"{MAX_CONFIG_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: the fastconv config file is not UTF-8 text ({e})") from None


def read_config_file(path):
    """Parse a config file into a dict of :class:`fastconv.Options` fields.

    Raises
    ------
    ConfigError
        On a syntax error, an unknown key, a value of the wrong type, or an
        unknown strategy; the message names the file and the key.
    """
    from . import _strategies
    from ._config import MODES

    path = os.fspath(path)
    text = _read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: TOML syntax error: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: TOML nested too deeply") from None
    if os.path.basename(path) == "pyproject.toml":
        tool = data.get("tool", {})
        data = tool.get("fastconv") if isinstance(tool, dict) else None
        if data is None:
            raise ConfigError(f"{path}: no [tool.fastconv] table")
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [tool.fastconv] must be a table, got "
                              f"{type(data).__name__}")
        prefix = f"{path}: [tool.fastconv]"
    else:
        prefix = f"{path}:"
    names = _strategies.names()
    out = {}
    for key, value in data.items():
        where = f"{prefix} {key}"
        if key == "rules":
            if not isinstance(value, list):
                raise ConfigError(f"{where}: expected an array of tables ([[rules]])")
            out["rules"] = tuple(_rule(t, f"{prefix} rules[{i}]", names) for i, t in enumerate(value))
        elif key == "memory_budget":
            out[key] = parse_size(value, where)
        elif key in _TYPES:
            if not isinstance(value, _TYPES[key]) or (
                    isinstance(value, bool) and bool not in _TYPES[key]):
                raise ConfigError(
                    f"{where}: expected {' or '.join(t.__name__ for t in _TYPES[key])}, "
                    f"got {type(value).__name__} {repr(value)[:80]}")
            out[key] = value
        else:
            raise ConfigError(
                f"{where}: unknown key; valid keys: {sorted([*_TYPES, 'memory_budget', 'rules'])}")
    if "mode" in out and out["mode"] not in MODES:
        raise ConfigError(f"{prefix} mode: expected one of {list(MODES)}, got {out['mode']!r}")
    if "strategy" in out and out["strategy"] not in ("auto", *names):
        raise ConfigError(
            f"{prefix} strategy: expected 'auto' or one of {list(names)}, got {out['strategy']!r}")
    if "cache_dir" in out:
        out["cache_dir"] = os.path.expanduser(out["cache_dir"])
    return out


# Loading lives here, not in _config: reading a file needs the strategy registry,
# which imports _config.
def load_config(path: str | os.PathLike) -> Options:
    """Read a strategy-selection config file and make its settings process-wide.

    As :func:`fastconv.set_config` with the file's values; a file named by
    ``$FASTCONV_CONFIG`` is loaded this way when fastconv is imported.

    Parameters
    ----------
    path : str or os.PathLike
        A TOML file; for a file named ``pyproject.toml`` its ``[tool.fastconv]``
        table. Its top-level keys are the options of :func:`fastconv.config`
        (``memory_budget`` also as "512MiB"); each ``[[rules]]`` table names a
        ``strategy`` and the problems it is for, by ``op``, ``ndim``, ``dtype``
        (a value or a list) and ``kernel``, ``spatial``, ``channels``,
        ``out_channels``, ``batch``, ``stride``, ``groups`` (an int, a ``[min,
        max]`` pair or a table with ``min`` and/or ``max``; ``kernel``,
        ``spatial`` and ``stride`` compare the largest extent). The dispatcher
        tries the rules in order; the first match decides.

    Returns
    -------
    Options
        The options now in force.

    Raises
    ------
    ConfigError
        A ValueError naming the file, the key and what was expected.

    Examples
    --------
    >>> import os, tempfile, fastconv
    >>> path = os.path.join(tempfile.mkdtemp(), "fastconv.toml")
    >>> with open(path, "w") as f:
    ...     _ = f.write('''
    ... memory_budget = "512MiB"
    ... [[rules]]
    ... kernel = 1
    ... channels = {min = 64}
    ... strategy = "im2col"
    ... ''')
    >>> before = fastconv.get_config()
    >>> opts = fastconv.load_config(path)
    >>> opts.memory_budget, opts.rules[0].strategy
    (536870912, 'im2col')
    >>> fastconv.explain("forward", (1, 64, 14, 14), (64, 64, 1, 1)).decided_by
    'config-rule'
    >>> fastconv.set_config(memory_budget=before.memory_budget, rules=before.rules)
    """
    from ._config import get_config, set_config

    values = read_config_file(path)
    try:
        set_config(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{os.fspath(path)}: {e}") from None
    return get_config()


def load_env_config():
    """Load the file named by ``$FASTCONV_CONFIG``, if set (done at import).

    A file that cannot be used is reported with a RuntimeWarning and the
    defaults stay in force: ``import fastconv`` (and so the ``fastconv``
    command, ``tune --clear`` included) must not fail because of it. Call
    :func:`load_config` to get the error as a :class:`ConfigError`.
    """
    path = os.environ.get("FASTCONV_CONFIG")
    if path:
        try:
            load_config(path)
        except ConfigError as e:
            warnings.warn(f"fastconv: FASTCONV_CONFIG ignored, defaults in force: {e}",
                          RuntimeWarning, stacklevel=2)
