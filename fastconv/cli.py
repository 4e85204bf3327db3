"""Command line: ``fastconv bench | explain | tune | info`` (also ``python -m fastconv``).

Each subcommand lives in its own module and registers its arguments through an
``add_arguments(parser)`` / ``main(args)`` pair, so this file stays a table.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
_COMMANDS = {
    "bench": ("fastconv._bench", "run the benchmark suite and write a report"),
    "explain": ("fastconv._tuning", "say which strategy the dispatcher picks for a layer, and why"),
    "tune": ("fastconv._tuning", "calibrate the cost model on this machine; show or clear the tuning cache"),
    "info": ("fastconv._info", "show version, compiled modules, OpenMP, threads and BLAS"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastconv", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (modname, help_) in _COMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        adder = getattr(mod, f"add_{name}_arguments", None)
        if adder is None:
            continue
        p = sub.add_parser(name, help=help_, description=help_)
        adder(p)
        p.set_defaults(_run=getattr(mod, f"run_{name}"))
    args = parser.parse_args(argv)
    return args._run(args) or 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
