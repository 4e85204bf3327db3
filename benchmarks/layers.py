"""The benchmark layer table, as data.

The table itself lives in the installed package (:mod:`fastconv.bench.layers`), so
that ``fastconv bench`` and these pytest-benchmark suites time exactly the same
layers; this module only re-exports it for the suites in this folder.

Each layer exists in three sizes: "full" (representative sizes of real networks), "quick"
(scaled down; ``pytest benchmarks --quick``, as CI runs it) and "tiny".
"""
from fastconv.bench.layers import (  # noqa: F401
    LAYER_NAMES,
    LAYERS,
    MAX_MACS,
    SIZES,
    Layer,
    get_layer,
    layers,
    sweep_layers,
    too_big,
)
