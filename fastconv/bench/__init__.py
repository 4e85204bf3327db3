"""The benchmark behind ``fastconv bench``: time every registered strategy, the
dispatcher ("auto") and the peers (PyTorch, SciPy) on representative layers,
and write a report.

Modules, in the order a run uses them:

``layers``   the layer table (three sizes: tiny, quick, full) and the sweeps;
``calls``    the timed callables (fastconv, auto, PyTorch, SciPy) on one layer;
``timing``   interleaved timing rounds and the matmul ceiling;
``machine``  CPU, threads, versions, BLAS, load; which peers are missing;
``run``      one run: plan, time, summarize, write (the engine of the CLI);
``report``   the Markdown report, opening with a recommendation from the data;
``plots``    the PNG plots (matplotlib);
``schema``   the JSON Schema of results.json and its check (jsonschema).

The command line is in :mod:`fastconv.cli`. Other suites (``fastconv bench
--suite torch`` or ``--suite dask``) live in ``suite_<name>`` modules of this
package, imported only when asked for; each provides::

    run_suite(out_dir, *, size, n_threads, progress) -> path of the Markdown file written

where ``progress(message, done=None, total=None)`` reports one step (the CLI
draws it as a progress bar) and a missing optional dependency raises ImportError.

Output folder (``--out``, default ``bench-report``)
---------------------------------------------------
``report.md``
    Header (date, CPU, threads, versions, BLAS, the matmul ceiling), a summary
    table, then a table per layer: time per strategy, GFLOP/s, fraction of the
    matmul ceiling, what "auto" chose and its regret, PyTorch's time and ratio
    (when installed), conv vs dense parameter counts.
``results.json``
    The raw results; schema ``fastconv-bench/1`` in ``fastconv/bench/schema.json``
    (JSON Schema), checked by :func:`fastconv.bench.schema.validate_results`. In short::

        {"schema": "fastconv-bench/1", "created": ISO time, "suite": "quick",
         "dtype": "float32", "repeat": 5, "elapsed_s": 58.1,
         "machine": {"cpu", "threads", "python", "numpy", "scipy", "torch",
                     "fastconv", "openmp", "strategies", "blas"},
         "ceiling": {"n": 1024, "gflops": 80.1, "best_s": 0.027},
         "layers":  [{"name", "group", "size", "ndim", "input_shape", "weight_shape",
                      "output_shape", "stride", "padding", "groups", "macs", "flops",
                      "params": {"conv_total", "dense_total", "ratio", ...}}],
         "results": [{"layer", "op", "impl", "kind": "strategy"|"auto"|"peer",
                      "status": "ok"|"skipped"|"error", "reason", "times_s",
                      "warmup_s", "best_s", "median_s", "gflops", "ceiling_fraction",
                      "workspace_bytes", "chosen", "decided_by"}],
         "summary": [{"layer", "op", "best", "best_s", "auto", "auto_s", "regret",
                      "choice_regret", "torch_s", "torch_ratio"}],
         "sweeps":  [{"name": "kernel"|"input", "x_label", "op",
                      "points": [{"x", "layer", "impl", "status", "best_s", "macs"}]}],
         "plots": ["kernel_sweep.png", ...], "plots_skipped": null | reason}

    ``regret`` is time(auto) / time(fastest strategy); ``choice_regret`` is
    time(the strategy auto chose, timed as itself) / time(fastest strategy): the
    quality of the decision alone, free of the noise of timing the same kernel
    twice (auto runs exactly the chosen strategy, plus microseconds of
    dispatch); ``torch_ratio`` is time(fastest strategy) / time(torch) (above 1:
    PyTorch is faster).
``kernel_sweep.png``, ``input_sweep.png``, ``params.png``
    Time per strategy against kernel size and against input size (2-D forward,
    where the crossovers are), and conv vs dense parameter counts (log scale).
    Written only when matplotlib is installed (``pip install "fastconv[bench]"``).
"""
