"""The package's import graph: no cycles (counting imports inside functions too), every
module importable, and ``import fastconv`` free of the command line, the benchmark and
their optional libraries; the unbuilt source tree's import error says what to do."""
import ast
import os
import subprocess
import sys

from _helpers import run_child

import fastconv

ROOT = os.path.dirname(fastconv.__file__)


def _modules():
    """Dotted name -> (path, is_package) of every .py module of the package."""
    out = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), os.path.dirname(ROOT))
                parts = rel[:-3].split(os.sep)
                is_pkg = parts[-1] == "__init__"
                if is_pkg:
                    parts.pop()
                out[".".join(parts)] = (os.path.join(folder, f), is_pkg)
    return out


def import_graph():
    """Module -> set of package modules it imports anywhere in its source (lazy ones too).

    ``from . import x`` counts as an import of the submodule ``x`` when it is
    one. The implicit import of parent packages is not an edge: every module
    would otherwise "cycle" through ``fastconv/__init__``, which imports them.
    """
    mods = _modules()
    graph = {}
    for name, (path, is_pkg) in mods.items():
        package = name if is_pkg else name.rpartition(".")[0]
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod
                           for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t in mods and t != name)
        graph[name] = edges
    return graph


def _find_cycle(graph):
    """One cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state:
                cycle = visit(m)
                if cycle:
                    return cycle
        stack.pop()
        state[n] = "done"
        return None

    for n in sorted(graph):
        if n not in state:
            cycle = visit(n)
            if cycle:
                return cycle
    return None


def test_cycle_finder_finds_cycles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_graph_sees_relative_and_lazy_imports():
    g = import_graph()
    assert "fastconv._ext" in g["fastconv._strategies.direct"]  # from .._ext import
    assert "fastconv.bench.layers" in g["fastconv.cli"]  # from .bench import layers
    assert "fastconv._tuning" in g["fastconv._dispatch"]


def test_no_import_cycles():
    cycle = _find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_imports_and_the_core_stays_lean(tmp_path):
    # A module that needs a missing optional extra may raise ImportError, if the
    # message says what to install (e.g. fastconv.dask without Dask).
    # Any `import fastconv.X` first runs fastconv/__init__ in full, so one child
    # that imports the package and then each module sees each module as a fresh
    # interpreter would (and costs one interpreter start, not thirty).
    code = (
        "import importlib, sys\n"
        "import fastconv\n"
        "lean = [m for m in ('fastconv.cli', 'fastconv.bench', 'matplotlib', 'jsonschema',"
        " 'tqdm', 'torch') if m in sys.modules]\n"
        "print('LOADED', *lean)\n"
        f"for m in {sorted(_modules())!r}:\n"
        "    if m.endswith('__main__'):\n"
        "        continue\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except ImportError as e:\n"
        "        if 'pip install' not in str(e):  # else: an optional extra, said so\n"
        "            print('FAILED', m, repr(e))\n"
    )
    # cwd outside the source tree: `-c` puts the cwd first on sys.path
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "FAILED" not in r.stdout, r.stdout
    assert r.stdout.splitlines()[0] == "LOADED", r.stdout


def test_submodules_are_attributes_imported_on_first_use():
    # `import fastconv; fastconv.nn.Conv2d` raised AttributeError (fastconv.torch,
    # fastconv.dask and fastconv.bench too) until the submodule was imported
    code = (
        "import sys\n"
        "import fastconv\n"
        "heavy = ('torch', 'dask', 'distributed', 'matplotlib', 'fastconv.nn', "
        "'fastconv.torch', 'fastconv.dask', 'fastconv.bench')\n"
        "print('LOADED', *[m for m in heavy if m in sys.modules])\n"
        "assert {'nn', 'torch', 'dask', 'bench'} <= set(dir(fastconv))\n"
        "assert not hasattr(fastconv, 'no_such_thing')\n"
        "assert fastconv.nn.Conv2d(1, 1, 3, rng=0).weight.shape == (1, 1, 3, 3)\n"
        "assert fastconv.bench.__name__ == 'fastconv.bench'\n"
        "for name, attr in (('dask', 'conv'), ('torch', 'Conv2d')):\n"
        "    try:\n"
        "        getattr(getattr(fastconv, name), attr)\n"
        "    except ImportError as e:  # the extra is not installed: the message says so\n"
        "        assert 'pip install' in str(e), e\n"
        "        print('MISSING', name)\n"
    )
    cwd = os.path.dirname(ROOT)   # where the tested package was imported from
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "LOADED", r.stdout


def test_a_missing_extra_is_an_import_error_not_an_attribute_error():
    code = (
        "import sys\n"
        "sys.modules['torch'] = sys.modules['dask'] = None   # as if not installed\n"
        "import fastconv\n"
        "for name in ('torch', 'dask'):\n"
        "    try:\n"
        "        getattr(fastconv, name)\n"
        "    except ImportError as e:\n"
        "        print(name, 'ImportError', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=os.path.dirname(ROOT))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split()[:2] for ln in lines] == [["torch", "ImportError"],
                                                 ["dask", "ImportError"]], r.stdout
    assert "pip install" in lines[1], r.stdout   # fastconv.dask says what to install


# importing the unbuilt source tree says what to do
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
    rc, out, err = run_child(code, cwd=str(tmp_path), env={"PYTHONPATH": str(tmp_path)})
    assert rc != 0
    assert "uncompiled source tree" in err and "build_ext --inplace" in err, err[-1500:]
