"""The public API's docstrings: numpydoc's validator finds none of the errors we
enforce, and their examples run.

The public API is every name in ``fastconv.__all__`` (the submodules listed there
by their own ``__all__``), the ``__all__`` of ``fastconv.nn``, ``fastconv.torch``
and ``fastconv.dask``, :class:`fastconv.Options` and :class:`fastconv.Decision`,
and the public methods and properties those classes define.
"""
from __future__ import annotations

import dataclasses
import doctest
import importlib
import inspect
import subprocess
import sys
import types
import typing

import pytest

import fastconv

validate = pytest.importorskip("numpydoc.validate")
docscrape = pytest.importorskip("numpydoc.docscrape")

# The numpydoc checks held to zero errors, each with why. Not enforced: the
# summary's verb form (SS05, the project writes "Gradient of ..." as often as
# "Return ..."), the line the text starts on (GL01, GL02), extended summary,
# See Also and Examples on every name (ES01, SA01, EX01: examples are given
# where they help and run below), the capital and period of every parameter
# and return description (PR08, PR09, RT04, RT05: style only), and a named
# first Returns line (RT02: ``y : ndarray`` names what the text talks about).
ENFORCED = {
    "GL03": "no double blank line: it breaks the rendered sections",
    "GL05": "no tab in the indentation",
    "GL06": "only numpydoc's section names (others are not rendered as sections)",
    "GL07": "sections in numpydoc's order",
    "GL08": "every public object has a docstring",
    "GL10": "reST directives are written with two colons",
    "SS01": "a summary line",
    "SS02": "the summary starts with a capital letter",
    "SS03": "the summary ends with a period",
    "SS04": "no leading whitespace in the summary",
    "SS06": "the summary fits on one line (help() and the API index show it alone)",
    "PR01": "every parameter of the signature is documented",
    "PR02": "no documented parameter the signature does not have",
    "PR03": "parameters documented in the signature's order",
    "PR04": "every parameter has a type",
    "PR05": "a parameter type does not end with a period",
    "PR06": "types spelled int, bool, str (not integer, boolean, string)",
    "PR07": "every parameter has a description",
    "PR10": "a space before the colon of 'name : type'",
    "RT01": "a Returns section where the function returns a value",
    "RT03": "every returned value is described",
    "YD01": "a Yields section for a generator",
}

# Classes users receive and read, not construct (``get_config()``, ``explain()``,
# ``make_spec()``, ``conv_vs_dense()``, ``convert()``): their dataclass
# ``__init__`` takes every field, which the Attributes section documents, so
# for them the parameter checks are replaced by "every field is an attribute".
_RECEIVED = ("Options", "Decision", "Candidate", "ConvSpec", "ParamCounts", "ConvertReport")
_PARAMETER_CHECKS = {"PR01", "PR02", "PR03"}
# A property is documented as an attribute: a sentence, no Returns section.
_PROPERTIES = set()


def _module_names(mod):
    return [n for n in mod.__all__ if not n.startswith("__")]


def _public_modules():
    mods = [fastconv, fastconv.grad, fastconv.params, fastconv.nn]
    for extra in ("fastconv.torch", "fastconv.dask"):
        try:
            mods.append(importlib.import_module(extra))
        except ImportError:  # the extra's own tests say so; the rest is still checked
            pass
    return mods


def _members(cls):
    """Public methods and properties ``cls`` defines in fastconv (not those
    inherited from torch or object)."""
    for klass in cls.__mro__:
        if not klass.__module__.startswith("fastconv"):
            continue
        for name, v in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(v, property):
                _PROPERTIES.add(v.fget)
                yield f"{cls.__name__}.{name}", v.fget
            elif isinstance(v, types.FunctionType):
                yield f"{cls.__name__}.{name}", v


def public_objects():
    """``(qualified name, object)`` of every public function, class, method."""
    out = {}
    for mod in _public_modules():
        for name in _module_names(mod):
            obj = getattr(mod, name)
            if isinstance(obj, types.ModuleType):
                continue  # its own __all__ is listed (grad, params) or it is torch.ops
            out[f"{mod.__name__}.{name}"] = obj
            if inspect.isclass(obj):
                for mname, m in _members(obj):
                    out[f"{mod.__name__}.{mname}"] = m
    return out


PUBLIC = public_objects()


def _errors(name, obj):
    result = validate.validate(docscrape.get_doc_object(obj))
    errs = [(code, msg) for code, msg in result["errors"] if code in ENFORCED
            and not (code == "RT01" and obj in _PROPERTIES)]
    if inspect.isclass(obj) and obj.__name__ in _RECEIVED:
        errs = [e for e in errs if e[0] not in _PARAMETER_CHECKS]
        documented = {n.strip() for p in docscrape.get_doc_object(obj)["Attributes"]
                      for n in p.name.split(",")}
        missing = {f.name for f in dataclasses.fields(obj)} - documented
        if missing:
            errs.append(("attributes", f"fields {sorted(missing)} not in Attributes"))
    return errs


def test_the_public_api_is_all_there():
    """The list validated below is the API, not an accident of imports."""
    assert {"fastconv.Options", "fastconv.Decision", "fastconv.explain", "fastconv.config",
            "fastconv.nn.Conv2d", "fastconv.nn.Conv2d.backward",
            "fastconv.grad.conv2d_input"} <= set(PUBLIC)
    assert len(PUBLIC) > 60


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_numpydoc(name):
    errs = _errors(name, PUBLIC[name])
    assert not errs, f"{name}:\n" + "\n".join(f"  {c} {m} ({ENFORCED.get(c, '')})"
                                               for c, m in errs)


def _doctests():
    """The examples of the public modules and names, each docstring once (a
    re-exported function is found under two names)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    seen, tests = set(), {}
    for mod in _public_modules():
        found = list(finder.find(mod))
        for name in _module_names(mod):
            # empty globals: an example imports what it uses, as a user would
            found += finder.find(getattr(mod, name), f"{mod.__name__}.{name}", globs={})
        for t in found:
            if t.examples and t.docstring not in seen:
                seen.add(t.docstring)
                tests[t.name] = t
    return tests


DOCTESTS = _doctests()


def test_there_are_examples():
    assert len(DOCTESTS) >= 15, sorted(DOCTESTS)


@pytest.mark.parametrize("name", sorted(DOCTESTS))
def test_examples_run(name):
    t = DOCTESTS[name]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = []
    runner.run(t, out=out.append)
    assert runner.failures == 0, "".join(out)


def test_the_numpy_api_is_annotated():
    """Every public function and class constructor of the NumPy API has type hints
    that resolve (the package ships py.typed)."""
    unresolved = []
    for mod in (fastconv, fastconv.grad, fastconv.params, fastconv.nn):
        for name in _module_names(mod):
            obj = getattr(mod, name)
            target = obj.__init__ if inspect.isclass(obj) else obj
            if not isinstance(target, types.FunctionType):
                continue  # a module, or a class with a C constructor (ConfigError)
            try:
                hints = typing.get_type_hints(target)
            except NameError as e:
                unresolved.append(f"{mod.__name__}.{name}: {e}")
                continue
            if "return" not in hints:
                unresolved.append(f"{mod.__name__}.{name}: no return type")
    assert not unresolved, unresolved


# ---- the helper that completes Parameters sections ---------------------------
def test_shared_parameters_fill_in_signature_order():
    from fastconv._docstrings import shared_parameters, table

    shared = table("""
    a : int
        Shared a.
    c : int
        Shared c.
    unused : int
        Not in the signature: not added.
    """)

    @shared_parameters(shared)
    def f(a, b, c=1, **kwargs):
        """Summary.

        Parameters
        ----------
        b : int
            Own b.
        **kwargs
            Own kwargs.

        Returns
        -------
        int
            Something.
        """

    doc = docscrape.FunctionDoc(f)
    assert [p.name for p in doc["Parameters"]] == ["a", "b", "c", "**kwargs"]
    assert doc["Parameters"][0].desc == ["Shared a."]
    assert doc["Parameters"][1].desc == ["Own b."]
    assert [r.type for r in doc["Returns"]] == ["int"]


def test_an_own_entry_wins_and_a_section_is_made_when_missing():
    from fastconv._docstrings import add_parameters, table

    shared = table("""
    x : int
        Shared x.
    """)
    own = add_parameters("""Summary.

    Parameters
    ----------
    x : float
        Own x.
    """, shared, ["x"])
    assert "Own x." in own and "Shared x." not in own
    made = add_parameters("""Summary.

    Returns
    -------
    int
        Something.
    """, shared, ["x"])
    assert made.index("Parameters") < made.index("Shared x.") < made.index("Returns")


def test_import_without_docstrings(tmp_path):
    """``python -OO`` strips docstrings: completing them must not fail the import."""
    code = ("import fastconv, fastconv.nn, fastconv.grad, fastconv.params; "
            "assert fastconv.conv.__doc__ is None and fastconv.config.__doc__ is None; "
            "import numpy as np; x = np.ones((1, 1, 1, 1)); print(fastconv.conv2d(x, x).item())")
    # cwd outside the source tree: `-c` puts the cwd first on sys.path
    out = subprocess.run([sys.executable, "-OO", "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1.0"
