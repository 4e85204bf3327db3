"""The vocabulary of options and config files: :class:`ConfigError`, :class:`Rule`
and :func:`parse_size`.

Below both :mod:`fastconv._config` (which checks option values with them) and
:mod:`fastconv._configfile` (which reads files into them and needs the strategy
registry, itself importing ``_config``): keeping them here is what keeps the
three free of an import cycle.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ConfigError", "Rule", "parse_size"]


class ConfigError(ValueError):
    """A config file or value is malformed; the message names the file and the key.

    Raised by :func:`fastconv.load_config`; a ValueError, so ``except
    ValueError`` catches it too.
    """


_RANGE_KEYS = ("kernel", "spatial", "channels", "out_channels", "batch", "stride", "groups")
_SET_KEYS = ("op", "ndim", "dtype")
_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Rule:
    """One ``[[rules]]`` entry: conditions and the strategy they select."""

    strategy: str
    op: tuple | None = None
    ndim: tuple | None = None
    dtype: tuple | None = None
    kernel: tuple | None = None
    spatial: tuple | None = None
    channels: tuple | None = None
    out_channels: tuple | None = None
    batch: tuple | None = None
    stride: tuple | None = None
    groups: tuple | None = None
    source: str = ""

    def _values(self, spec):
        return {
            "kernel": max(spec.kernel),
            "spatial": max(spec.in_spatial),
            "channels": spec.in_channels,
            "out_channels": spec.out_channels,
            "batch": spec.batch,
            "stride": max(spec.stride),
            "groups": spec.groups,
        }

    def matches(self, op, spec):
        if self.op is not None and op not in self.op:
            return False
        if self.ndim is not None and spec.ndim not in self.ndim:
            return False
        if self.dtype is not None and spec.dtype.name not in self.dtype:
            return False
        vals = self._values(spec)
        for key in _RANGE_KEYS:
            rng = getattr(self, key)
            if rng is not None and not (rng[0] <= vals[key] <= rng[1]):
                return False
        return True


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(value, where="memory_budget"):
    """Bytes from an int or a string like "512MiB" / "1.5GB"."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ConfigError(f"{where}: expected a positive number of bytes, got {value!r}")
        return value
    if isinstance(value, str) and len(value) <= 64:
        m = _SIZE_RE.match(value)
        if m:
            nbytes = float(m.group(1)) * _UNITS[(m.group(2) or "B").lower()]
            if not (1 <= nbytes < 2**63):
                raise ConfigError(f"{where}: expected a positive size below 2**63 bytes, "
                                  f"got {value!r}")
            return int(nbytes)
    raise ConfigError(
        f"{where}: expected bytes as an int or a string such as '512MiB' or '2GB', got {value!r}"
    )
