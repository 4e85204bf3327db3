"""Parameter descriptions that several public functions share, written once.

A public function's docstring documents the parameters that are its own; the
decorator :func:`shared_parameters` adds the ones it shares with other
functions (``stride``, ``padding``, ... of every convolution), taken from a
table below, each at its place in the signature. ``help()``, the rendered API
and numpydoc's validator (``tests/test_docstrings.py``) see one complete
Parameters section in signature order; the source keeps each shared
description once, as plain numpydoc text: no ``str.format`` fields, no doubled
braces. A parameter the docstring documents itself keeps its own text.

This module imports nothing from fastconv, so any module can use it. Under
``python -OO`` (docstrings stripped) every function here leaves a missing
docstring missing.
"""
from __future__ import annotations

import inspect
import re
import sys

__all__ = ["CONV", "TRANSPOSE", "shared_parameters", "add_parameters", "table", "section",
           "keyword_entries"]


def _entries(lines):
    """``[(names, lines)]`` of a numpydoc parameter list: an entry starts at a
    line without indentation, its description is the indented lines after it."""
    out = []
    for line in lines:
        if line and not line[0].isspace():
            head = line.split(" : ", 1)[0] if " : " in line else line.split(":", 1)[0]
            out.append(([n.strip() for n in head.split(",") if n.strip()], [line]))
        elif out:
            out[-1][1].append(line)
    for _, body in out:
        while body and not body[-1].strip():
            body.pop()
    return out


def section(doc, title):
    """``{name: entry lines}`` of the section ``title`` of the docstring ``doc``
    (empty when docstrings are stripped: a dataclass then has a generated one)."""
    if doc is None or sys.flags.optimize >= 2:
        return {}
    lines = inspect.cleandoc(doc).splitlines()
    for k in range(len(lines) - 1):
        if lines[k].strip() == title and _HEADER.match(lines[k + 1]):
            return table("\n".join(lines[k + 2:_section_end(lines, k + 2)]))
    raise ValueError(f"no {title!r} section")


def table(text):
    """``{name: entry lines}`` from parameter entries written as in a docstring.

    An entry naming several parameters (``a, b : int``) is one entry for each.
    """
    return {name: body for names, body in _entries(inspect.cleandoc(text).splitlines())
            for name in names}


_HEADER = re.compile(r"^-{3,}$")


def _section_end(lines, start):
    """Index just past the section whose body starts at ``start``: the blank
    line before the next ``Title`` / ``-----`` header, or the end."""
    for i in range(start, len(lines) - 2):
        if not lines[i].strip() and lines[i + 1].strip() and _HEADER.match(lines[i + 2]):
            return i
    end = len(lines)
    while end > start and not lines[end - 1].strip():
        end -= 1
    return end


def _signature_names(obj):
    """Parameter names as numpydoc writes them (``*args``, ``**kwargs``), without self."""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return []
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    names = [stars.get(p.kind, "") + p.name for p in params]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def add_parameters(doc, shared, names):
    """``doc`` (cleaned) with a Parameters section holding, in the order of
    ``names``, its own entries and the entries of ``shared`` it lacks.

    Entries for names not in ``names`` stay after them; a ``shared`` entry for
    a name the signature does not have is not added. None stays None.
    """
    if doc is None:
        return None
    lines = inspect.cleandoc(doc).splitlines()
    try:
        i = next(k for k in range(len(lines) - 1)
                 if lines[k].strip() == "Parameters" and _HEADER.match(lines[k + 1]))
        start, end = i + 2, _section_end(lines, i + 2)
    except StopIteration:
        # no Parameters section: one goes before the first other section
        i = next((k for k in range(len(lines) - 1) if lines[k].strip()
                  and _HEADER.match(lines[k + 1])), len(lines))
        lines[i:i] = ["Parameters", "----------", ""] if i < len(lines) else [
            "", "Parameters", "----------"]
        start = end = i + 2
    own = _entries(lines[start:end])
    by_name = {n: e for e in own for n in e[0]}
    body, done = [], set()
    for name in names:
        if name in by_name:
            entry = by_name[name]
            if id(entry) not in done:
                done.add(id(entry))
                body += entry[1]
        elif name in shared:
            body += shared[name]
    for entry in own:
        if id(entry) not in done:
            body += entry[1]
    return "\n".join(lines[:start] + body + lines[end:])


def shared_parameters(*tables):
    """Decorator: complete the Parameters section of a function or class from
    ``tables`` (see the module docstring); a class's parameters are its
    constructor's."""
    shared = {}
    for t in tables:
        shared.update(t)

    def decorate(obj):
        obj.__doc__ = add_parameters(obj.__doc__, shared, _signature_names(obj))
        return obj

    return decorate


# The parameters of a convolution (fastconv.conv and everything with its
# arguments: conv1d/2d/3d, grad_input, grad_weight, conv_backward, fastconv.grad,
# fastconv.dask, fastconv.nn's Conv*d).
CONV = table('''
stride : int or tuple of int, default 1
    Step of the kernel along each spatial axis (>= 1).
padding : int, tuple, or {"valid", "same", "full"}, default 0
    Zeros added to both sides of each axis: one int for all axes, one int per
    axis, or one ``(before, after)`` pair per axis. "same" (stride 1 only)
    keeps the spatial size, putting the odd zero after; "full" pads
    ``dilation*(K-1)`` on both sides.
dilation : int or tuple of int, default 1
    Spacing between kernel taps (>= 1).
groups : int, default 1
    Channels are split into ``groups`` independent convolutions;
    ``groups == C_in`` with ``C_out == C_in`` is a depthwise convolution.
flip : bool, default False
    False: cross-correlation (what CNN layers compute). True: true
    convolution (kernel flipped along every spatial axis).
strategy : {"auto", "direct", "im2col", "fft", "winograd"}, default "auto"
    Force an algorithm; "auto" lets the dispatcher decide (see
    :func:`fastconv.explain`).
padding_mode : {"zeros", "reflect", "replicate", "circular"}, default "zeros"
    What the padding holds, as ``torch.nn.Conv2d``'s ``padding_mode``: zeros,
    the input mirrored at its edge (the edge not repeated), the edge value,
    or the input wrapped around. Other than zeros, the input is padded
    explicitly and convolved without padding (a padded copy of the input);
    reflect needs padding smaller than the input, circular at most its size.
ndim : int, optional
    Number of spatial axes (1, 2 or 3) the call must have: a weight with
    another number of dimensions raises ValueError. Default: the weight's
    number of dimensions minus 2.
needs : sequence of {"input", "weight", "bias"}, default all three
    The gradients to compute (like torch's ``output_mask``); the others
    are not computed and returned as None (a first layer needs no grad_x).
''')

# The parameters of a transposed convolution (fastconv.conv_transpose and its
# relatives), in PyTorch's order: output_padding and groups before dilation.
TRANSPOSE = table('''
stride : int or tuple of int, default 1
    Upsampling step along each spatial axis (the stride of the convolution
    this one is the transpose of).
padding : int, tuple of int, or tuple of (before, after) pairs, default 0
    ``dilation*(K-1) - padding`` zeros are added to each side of the input,
    i.e. ``padding`` is cropped from the full transposed output.
output_padding : int or tuple of int, default 0
    Extra size added to one side (the end) of each output axis; each must
    be smaller than the stride or the dilation of its axis.
groups : int, default 1
    Channels are split into ``groups`` independent transposed convolutions.
dilation : int or tuple of int, default 1
    Spacing between kernel taps (>= 1).
strategy : {"auto", "direct", "im2col", "fft", "winograd"}, default "auto"
    Force an algorithm for the convolution op that computes this one; "auto"
    lets the dispatcher decide.
needs : sequence of {"input", "weight", "bias"}, default all three
    The gradients to compute; the others are not computed and returned as None.
''')


def keyword_entries(entries):
    """Decorator: list ``entries`` (a :func:`table`), indented, in the
    description of the function's ``**kwargs`` entry.

    For a function taking named options as ``**kwargs`` (``fastconv.config``):
    numpydoc's Parameters section may only name the signature's parameters, so
    each option is described inside the ``**kwargs`` entry.
    """
    def decorate(f):
        if f.__doc__ is None:
            return f
        lines = inspect.cleandoc(f.__doc__).splitlines()
        k = next(k for k, line in enumerate(lines) if line.startswith("**"))
        end = k + 1
        while end < len(lines) and (not lines[end] or lines[end][0].isspace()):
            end += 1
        while not lines[end - 1].strip():
            end -= 1
        added = [""] + ["    " + line if line else "" for body in entries.values()
                        for line in body]
        f.__doc__ = "\n".join(lines[:end] + added + lines[end:])
        return f

    return decorate
