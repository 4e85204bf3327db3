"""Command line: ``fastconv bench | explain | tune | info | demo`` (also ``python -m fastconv``).

All command-line code of the package is here: the parsers, the commands, the
progress bars and the error handling. The work itself is done by the library
(:mod:`fastconv.bench`, :mod:`fastconv._tuning`, :func:`fastconv.explain`).

Errors a user can cause (a bad option, a shape that does not fit, an
unreadable file) print one line ``fastconv: error: ...`` and exit with status 2.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import re
import sys
import time

from . import _calibrate, _tuning
from ._api import explain
from ._config import config, get_config
from ._info import show_config, strategies
from ._spec import OPS
from ._version import __version__
from .bench import layers as _layers

# bench --suite NAME -> (module providing run_suite, the extra that brings its dependencies)
SUITES = {"layers": (None, None),
          "torch": ("fastconv.bench.suite_torch", '"fastconv[torch]" (torch==2.13.0 is the CPU build)'),
          "dask": ("fastconv.bench.suite_dask", '"fastconv[dask]"')}


class UsageError(Exception):
    """A mistake in the command line, reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``fastconv: error: ...``, exit 2) instead of usage dumps."""

    def error(self, message):
        where = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        raise UsageError(f"{where}{message} (see {self.prog} --help)")


# ---------------------------------------------------------------------------
# argument types
# ---------------------------------------------------------------------------
def parse_shape(text):
    """A shape from ``8,32,64,64``, ``(8, 32, 64, 64)``, ``[8, 32, 64, 64]`` or ``8x32x64x64``."""
    body = text.strip()
    if body[:1] in "([" and body[-1:] in ")]":
        body = body[1:-1]
    parts = [p.strip() for p in re.split(r"[,x]", body)]
    if parts and parts[-1] == "":  # a trailing comma, as in "(8,)"
        parts.pop()
    if not parts or not all(re.fullmatch(r"-?\d+", p) for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected a shape such as 8,32,64,64 or (8, 32, 64, 64), got {text!r}")
    shape = tuple(int(p) for p in parts)
    negative = [v for v in shape if v < 0]
    if negative:
        raise argparse.ArgumentTypeError(
            f"negative size {negative[0]} in {text!r}: every size must be 0 or more "
            "(expected a shape such as 8,32,64,64)")
    return shape


def parse_param(text):
    """``1`` -> 1; ``1,2`` or ``(1, 2)`` -> (1, 2); ``((1,2),(0,1))`` -> pairs; ``same`` -> "same"."""
    text = text.strip()
    if text.isalpha():
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(
            f"expected an int, a tuple such as 1,2 or ((1,1),(0,2)), or a word such as same; "
            f"got {text!r}") from None
    return tuple(value) if isinstance(value, list) else value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# ---------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------
def _stderr_is_tty():
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """A ``progress(message, done=None, total=None)`` callback: a tqdm bar (with ETA)
    on stderr with each message printed above it when stderr is a terminal and
    tqdm is installed; otherwise one plain line per message, ``[done/total, ETA]``
    first, so a log file gets whole lines and no bar redraws between them.

    The bar closes itself when ``done`` reaches ``total``, so lines printed after
    the last step are not interleaved with it. ``total`` may change between
    calls (a time budget that cuts a run short).
    """

    def __init__(self, desc, stream=None):
        self.desc, self.stream, self.bar = desc, stream, None
        tqdm = None
        if _stderr_is_tty():
            try:
                import tqdm
            except ImportError:
                tqdm = None
        self._tqdm = tqdm
        self._t0 = time.perf_counter()

    def _eta(self, done, total):
        elapsed = time.perf_counter() - self._t0
        if done >= total:
            return f", {_clock(elapsed)} elapsed"
        return f", ETA {_clock(elapsed / done * (total - done))}" if done else ""

    def __call__(self, message, done=None, total=None):
        out = self.stream or sys.stdout
        if done is None or not total:
            if self.bar is not None:
                self.bar.write(message, file=out)
            else:
                print(message, file=out, flush=True)
            return
        width = len(str(total))
        if self._tqdm is None:
            print(f"[{done:{width}d}/{total}{self._eta(done, total)}] {message}", file=out,
                  flush=True)
            return
        if self.bar is None:
            self.bar = self._tqdm.tqdm(total=total, desc=self.desc, unit="step",
                                       dynamic_ncols=True, file=sys.stderr)
        if self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()
        self.bar.write(f"[{done:{width}d}/{total}] {message}", file=out)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ---------------------------------------------------------------------------
# fastconv bench
# ---------------------------------------------------------------------------
def add_bench_arguments(parser):
    parser.add_argument("--suite", choices=tuple(SUITES), default="layers",
                        help="layers: fastconv's strategies on the layer table (default); "
                             "torch: training steps of PyTorch models with fastconv layers; "
                             "dask: convolution of Dask arrays")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="size", action="store_const", const="quick",
                      help="scaled-down layers, about a minute on 2 cores (default)")
    size.add_argument("--full", dest="size", action="store_const", const="full",
                      help="full-size layers of real networks (minutes; see --list --full)")
    size.add_argument("--size", dest="size", choices=_layers.SIZES,
                      help="tiny | quick | full (tiny: checks the machinery in seconds)")
    parser.set_defaults(size="quick")
    parser.add_argument("--layer", action="append", metavar="NAME",
                        help="only this layer (name or group; repeatable). "
                             f"Names: {', '.join(_layers.LAYER_NAMES)}; "
                             f"'{_layers.HELD_OUT_GROUP}' selects shapes the cost model was "
                             "not fitted to")
    parser.add_argument("--ndim", action="append", type=int, choices=(1, 2, 3),
                        help="only layers with this many spatial axes (repeatable)")
    parser.add_argument("--op", action="append", choices=OPS,
                        help="only this op (repeatable; default all three)")
    parser.add_argument("--strategy", action="append", metavar="NAME",
                        help="only this strategy, or 'auto' (repeatable; default: every "
                             "registered strategy and auto)")
    parser.add_argument("--no-peers", action="store_true", help="do not time PyTorch or SciPy")
    parser.add_argument("--out", default="bench-report", metavar="DIR",
                        help="output folder (default: bench-report)")
    parser.add_argument("--repeat", type=_positive_int, default=5,
                        help="least number of timed calls per case after one warm-up (default 5)")
    parser.add_argument("--max-time", type=float, default=None, metavar="SECONDS",
                        help="stop repeating a case after this many seconds of timed calls "
                             "(default 1 for quick, 10 for full)")
    parser.add_argument("--min-time", type=float, default=None, metavar="SECONDS",
                        help="repeat short calls (up to 200) until they add up to this "
                             "(default 0.05 for quick, 0.5 for full)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="element type of the arrays (default float32)")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="threads for fastconv (and torch); default: all available")
    parser.add_argument("--no-sweep", action="store_true",
                        help="skip the kernel-size / input-size sweeps")
    parser.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    parser.add_argument("--list", action="store_true", help="list the layers and exit")
    parser.add_argument("--mode", choices=("heuristic", "autotune", "cache-only"), default=None,
                        help="dispatcher mode for 'auto' (default: the configured one)")


def _run_suite(args):
    modname, extra = SUITES[args.suite]
    only_layers = [f"--{k}" for k in ("layer", "ndim", "op", "strategy", "list")
                   if getattr(args, k)]
    if only_layers:
        raise UsageError(f"bench: {', '.join(only_layers)} select(s) within the layers suite, "
                         f"not --suite {args.suite}")
    try:
        mod = importlib.import_module(modname)
    except ImportError as e:
        if e.name == modname:
            raise UsageError(f"the {args.suite} suite is not part of this installation") from None
        raise UsageError(f"the {args.suite} suite needs {e.name or 'a missing package'} ({e}); "
                         f"install it with: pip install {extra}") from None
    progress = Progress(f"bench {args.suite}")
    try:
        path = mod.run_suite(args.out, size=args.size, n_threads=args.threads,
                             progress=progress)
    except ImportError as e:
        raise UsageError(f"the {args.suite} suite needs {e.name or 'a missing package'} ({e}); "
                         f"install it with: pip install {extra}") from None
    finally:
        progress.close()
    print(f"wrote {path}")
    return 0


def run_bench(args):
    from .bench.machine import PEERS
    from .bench.run import run

    if args.suite != "layers":
        return _run_suite(args)
    layer_list = _layers.layers(args.size, args.layer, args.ndim)  # ValueError names the layer
    if args.list:
        for lay in layer_list:
            print(f"{lay.name:15s} {lay.group:13s} {lay.describe()}  "
                  f"({lay.spec().macs:.3g} multiply-adds)")
        return 0
    known = set(strategies()) | {"auto"}
    bad = [s for s in args.strategy or () if s not in known]
    if bad:
        raise UsageError(f"bench: unknown strategy {', '.join(bad)}; available: "
                         f"{', '.join(sorted(known))}")
    impls = list(dict.fromkeys(args.strategy)) if args.strategy else None
    opts = {} if args.threads is None else {"n_threads": args.threads}
    if args.mode:
        opts["mode"] = args.mode
    progress = Progress("bench")
    try:
        with config(**opts):
            run(size=args.size, names=args.layer, ndims=args.ndim, ops=tuple(args.op or OPS),
                impls=impls, peers=() if args.no_peers else PEERS, out=args.out,
                repeat=args.repeat, max_time=args.max_time, min_time=args.min_time,
                dtype=args.dtype, sweep=not args.no_sweep, plots=not args.no_plots,
                argv=sys.argv[1:], progress=progress)
    finally:
        progress.close()
    return 0


# ---------------------------------------------------------------------------
# fastconv explain / fastconv tune / fastconv info
# ---------------------------------------------------------------------------
def add_explain_arguments(p):
    p.add_argument("op", choices=OPS, help="the op to explain")
    p.add_argument("--input", required=True, type=parse_shape, metavar="SHAPE",
                   help="input shape, e.g. 32,64,56,56 or (32, 64, 56, 56)")
    p.add_argument("--weight", required=True, type=parse_shape, metavar="SHAPE",
                   help="weight shape, e.g. 64,64,3,3 or (64, 64, 3, 3)")
    p.add_argument("--stride", default="1", type=parse_param, help="int or per-axis tuple (default 1)")
    p.add_argument("--padding", default="0", type=parse_param,
                   help="int, per-axis tuple, ((b,a),...) pairs, valid, same or full (default 0)")
    p.add_argument("--dilation", default="1", type=parse_param,
                   help="int or per-axis tuple (default 1)")
    p.add_argument("--groups", default=1, type=_positive_int, help="channel groups (default 1)")
    p.add_argument("--flip", action="store_true", help="true convolution (kernel flipped)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                   help="element type (default float32)")
    p.add_argument("--strategy", default="auto", metavar="NAME",
                   help="force this strategy and show its estimate beside what auto picks "
                        f"(one of {', '.join(strategies())}; default auto)")


def _shape_text(shape):
    return ",".join(map(str, shape))


def _check_reading(args):
    """Refuse an input whose rank reads as unbatched but whose channels do not fit.

    An input with one axis fewer than the weight is one unbatched example
    ``(C_in, *spatial)``; with a 2-D kernel a 3-D input ``8,3,32`` is then
    C_in=8, H=3, W=32, although the user more likely meant a batch of 8 signals
    of 3 channels (which needs a 1-D kernel). Name both readings.
    """
    x, w, groups = args.input, args.weight, args.groups
    if len(w) < 3 or len(x) != len(w) - 1:
        return
    k = len(w) - 2
    want = w[1] * groups
    if x[0] == want:
        return
    axes = ("L",) if k == 1 else ("H", "W") if k == 2 else ("D", "H", "W")
    read = ", ".join(f"{a}={v}" for a, v in zip(("C_in",) + axes, x))
    msg = (f"explain: --input {_shape_text(x)} has {len(x)} axes and --weight "
           f"{_shape_text(w)} a {k}-D kernel, so the input reads as one unbatched {k}-D example "
           f"({read}), but the weight expects C_in={want}")
    if len(x) >= 3:
        lower = {1: "1-D", 2: "2-D"}[len(x) - 2]
        kernel = _shape_text(w[:2] + w[2:][-(len(x) - 2):])
        msg += (f". For a batch of {x[0]} {lower} inputs of {x[1]} channels (N={x[0]}, "
                f"C_in={x[1]}) the kernel must be {lower} too, e.g. --weight {kernel}")
    if len(x) >= 3 and x[1] == want:  # most likely a batch whose last axis was left out
        guess = _shape_text(x + (x[-1],) * (k + 2 - len(x)))
    else:
        guess = f"N,{want}," + ",".join(axes)
    msg += (f"; for a batch of {k}-D inputs give {k + 2} axes (N, C_in, {', '.join(axes)}), "
            f"e.g. --input {guess}")
    raise UsageError(msg)


def _forced_estimate(args):
    """The forced strategy's candidate line: calibrated estimate, threads, workspace."""
    from . import _dispatch, _strategies, _tuning
    from ._spec import make_spec, result_dtype

    spec = make_spec(args.input, args.weight, args.stride, args.padding, args.dilation,
                     args.groups, flip=args.flip, dtype=result_dtype(args.dtype))
    strat, opts = _strategies.get(args.strategy), get_config()
    threads, est = _tuning.run_threads(strat, args.op, spec, opts)
    ws = _dispatch.total_workspace(strat, spec, args.op, opts)
    return _dispatch.Candidate(args.strategy, estimate_s=est, workspace_bytes=ws, threads=threads)


def run_explain(args):
    _check_reading(args)
    call = (args.op, args.input, args.weight, args.stride, args.padding, args.dilation,
            args.groups)
    if len(args.input) == len(args.weight) - 1:
        print(f"input {_shape_text(args.input)} read as one unbatched example (C_in="
              f"{args.input[0]}); a batch needs {len(args.weight)} axes")
    if args.strategy == "auto":
        print(explain(*call, flip=args.flip, dtype=args.dtype))
        return 0
    # raises ValueError (unknown or unsuitable strategy) or MemoryError (over the budget)
    forced = explain(*call, flip=args.flip, dtype=args.dtype, strategy=args.strategy)
    auto = explain(*call, flip=args.flip, dtype=args.dtype)
    forced.candidates = [_forced_estimate(args)]
    print(forced)
    mine = next((c for c in auto.candidates if c.name == args.strategy), None)
    if auto.strategy is None:
        print(f"auto finds no strategy that fits: {auto.detail}")
    elif auto.strategy == args.strategy:
        print(f"auto picks {args.strategy} too ({auto.decided_by})")
    else:
        line = f"auto would pick {auto.strategy} ({auto.decided_by}"
        best = next((c for c in auto.candidates if c.name == auto.strategy), None)
        if best is not None and best.estimate_s is not None:
            line += f": {best.estimate_s * 1e3:.3f} ms est"
        print(line + ")")
    if mine is not None and mine.excluded:
        print(f"auto would not consider {args.strategy}: {mine.excluded}")
    return 0


def add_tune_arguments(p):
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--calibrate", action="store_true",
                   help="refit the cost model on this machine: times every strategy on a grid "
                        "of problems, most informative first, within a time budget of "
                        f"{_calibrate.TIME_BUDGETS['default']:.0f} s (see --quick, --full, "
                        "--time-budget). On 2 cores: 61 s on a quiet machine, 80 s when shared "
                        "with other jobs (then only the steps that give each strategy, op, "
                        "dimensionality and dtype its first measurement ran)")
    g.add_argument("--show", action="store_true", help="print the cache files and their entries")
    g.add_argument("--clear", action="store_true", help="delete this machine's tuning cache")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="with --calibrate: a smaller grid, fewer repeats and a "
                           f"{_calibrate.TIME_BUDGETS['quick']:.0f} s budget")
    size.add_argument("--full", action="store_true",
                      help="with --calibrate: the whole grid with more repeats, no time budget "
                           "(minutes; much longer on a loaded machine)")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="with --calibrate: seconds to spend instead of the mode's budget; the "
                        "steps that give each strategy, op, dimensionality and dtype its first "
                        "measurement always run")


def run_tune(args):
    opts = get_config()
    if (args.quick or args.full or args.time_budget is not None) and not args.calibrate:
        raise UsageError("tune: --quick, --full and --time-budget go with --calibrate")
    if args.time_budget is not None and not args.time_budget > 0:
        raise UsageError(f"tune: --time-budget must be a positive number of seconds, "
                         f"got {args.time_budget}")
    if args.calibrate:
        progress = Progress("calibrate", stream=sys.stderr)
        t0 = time.perf_counter()
        try:
            factors = _calibrate.calibrate(quick=args.quick, full=args.full,
                                           time_budget=args.time_budget, progress=progress)
        finally:
            progress.close()
        print(f"wrote {len(factors)} factors to {_tuning.calibration_cache.path(opts)} "
              f"in {time.perf_counter() - t0:.0f} s")
    elif args.show:
        for cache in (_tuning.calibration_cache, _tuning.tuning_cache):
            entries = cache.entries(opts)
            print(f"{cache.path(opts)}: {len(entries)} entries")
            for k, v in sorted(entries.items()):
                print(f"  {k}: {v}")
    else:
        for path in _tuning.clear_cache(opts):
            print(f"removed {path}")
    return 0


def run_info(args):
    show_config()
    return 0


def run_demo(args):
    try:
        demo = importlib.import_module("fastconv.demo")
    except ModuleNotFoundError as e:
        if e.name != "fastconv.demo":
            raise
        raise UsageError("the demo is not part of this installation") from None
    return demo.main(list(args.demo_args)) or 0


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
# subcommand -> (one-line help, add arguments, run)
_COMMANDS = {
    "bench": ("run the benchmark suite and write a report", add_bench_arguments, run_bench),
    "explain": ("say which strategy the dispatcher picks for a layer, and why",
                add_explain_arguments, run_explain),
    "tune": ("calibrate the cost model on this machine; show or clear the tuning cache",
             add_tune_arguments, run_tune),
    "info": ("show version, compiled modules, OpenMP, threads and BLAS", None, run_info),
}


def build_parser():
    parser = _Parser(prog="fastconv",
                     description="Convolution for NumPy: benchmark the strategies, explain the "
                                 "dispatcher's choice, tune the cost model.",
                     epilog="Each command's options: fastconv COMMAND --help. The Python "
                            "API: python -m pydoc fastconv (and fastconv.grad, fastconv.nn, fastconv.torch, "
                            "fastconv.dask).")
    parser.add_argument("--version", action="version", version=f"fastconv {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, adder, runner) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if adder:
            adder(p)
        p.set_defaults(_run=runner)
    # the demo parses its own arguments: everything after "demo" is passed on
    p = sub.add_parser("demo", help="run the demo (fastconv demo --help for its options)",
                       add_help=False, prefix_chars="\0")
    p.add_argument("demo_args", nargs=argparse.REMAINDER, help="arguments of the demo")
    p.set_defaults(_run=run_demo)
    return parser


def _value_options(parser):
    """Option strings (of every subcommand) that take one value, such as ``--input``."""
    out = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= _value_options(sub)
        elif action.option_strings and action.nargs is None and isinstance(
                action, (argparse._StoreAction, argparse._AppendAction)):
            out.update(action.option_strings)
    return out


# A value such as "-8,3,32,32" or "(-1, 2)": argparse would take it for an option
_NEGATIVE_VALUE = re.compile(r"-\s*[\d(\[]|[(\[]\s*-")


def _attach_negative_values(parser, argv):
    """``--input -8,3,32,32`` -> ``--input=-8,3,32,32``.

    argparse reads a value that starts with ``-`` (other than a plain negative
    number) as an option and reports "expected one argument"; attached, the
    value reaches its type check, which says what is wrong with it.
    """
    if argv[:1] == ["demo"]:  # the demo parses its own arguments
        return argv
    takes_value = _value_options(parser)
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            return out + argv[i:]
        if token in takes_value and i + 1 < len(argv) and _NEGATIVE_VALUE.match(argv[i + 1]):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def main(argv=None):
    """Run the command line; returns the exit status (0 ok, 2 usage or input error)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    command = None
    try:
        if not argv:
            parser.print_help()
            return 0
        args = parser.parse_args(_attach_negative_values(parser, argv))
        if args.command is None:  # no command given
            parser.print_help()
            return 0
        command = args.command
        return args._run(args) or 0
    except (UsageError, ValueError, TypeError, MemoryError, OSError) as e:
        # user errors (bad shapes, unreadable files, nothing fits) are one line,
        # not a traceback; ConfigError is a ValueError
        msg = " ".join(str(e).split()) or type(e).__name__
        if command and command != "demo" and "--help" not in msg:
            msg += f" (see fastconv {command} --help)"
        print(f"fastconv: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastconv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
