"""The JSON Schema of ``results.json`` (``fastconv/bench/schema.json``) and its check.

Validation uses :mod:`jsonschema` (the ``bench`` extra), the reference
implementation of the standard, rather than a partial checker of our own.
"""
from __future__ import annotations

import functools
import json
from importlib import resources

__all__ = ["SCHEMA_ID", "load_schema", "validate_results"]

SCHEMA_ID = "fastconv-bench/1"


@functools.lru_cache(maxsize=1)
def load_schema():
    """The JSON Schema of ``results.json`` as a dict."""
    return json.loads(resources.files(__package__).joinpath("schema.json").read_text())


def _where(path):
    """``$.results[0].status`` for the path ``["results", 0, "status"]``."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def validate_results(obj):
    """Check a results.json object against :func:`load_schema`.

    Returns
    -------
    True

    Raises
    ------
    ValueError
        Listing every violation (where: what is wrong), at most 50.
    ImportError
        When jsonschema is not installed (``pip install "fastconv[bench]"``).
    """
    try:
        import jsonschema
    except ImportError as e:
        raise ImportError(f"validating results.json needs jsonschema ({e}); "
                          'pip install "fastconv[bench]"') from None
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ValueError(f"results do not match the {SCHEMA_ID} schema:\n  "
                         + "\n  ".join(f"{_where(e.absolute_path)}: {e.message:.200}"
                                       for e in errors[:50]))
    return True
