"""The PNG plots of a benchmark run: time per implementation against kernel size and
against input size (2-D forward, where the crossovers are), and conv vs dense
parameter counts. Every implementation in the sweep results gets a line, so a
newly registered strategy appears without a change here.

Needs matplotlib (the ``bench`` extra); :func:`write_plots` raises ImportError
without it and the run reports the plots as skipped.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["write_plots"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(obj, out):
    """Write the PNG plots; returns their file names. Raises ImportError without matplotlib."""
    plt = _pyplot()
    files = []
    for sw in obj["sweeps"]:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        impls = list(dict.fromkeys(pt["impl"] for pt in sw["points"]))
        for impl in impls:
            pts = [(pt["x"], pt["best_s"] * 1e3) for pt in sw["points"]
                   if pt["impl"] == impl and pt["status"] == "ok"]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", linestyle="--" if impl == "torch" else "-", label=impl)
        ax.set_yscale("log")
        ax.set_xlabel(sw["x_label"])
        ax.set_ylabel("time per call (ms, best)")
        title = f"2-D {sw['op']}: time per strategy vs {sw['name']} size ({obj['suite']})"
        if sw.get("layer"):  # what the sweep holds fixed: batch, channels, the other size
            title += "\n" + sw["layer"]
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        name = f"{sw['name']}_sweep.png"
        fig.savefig(os.path.join(out, name), dpi=100)
        plt.close(fig)
        files.append(name)
    if obj["layers"]:
        fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(obj["layers"]) + 1.5))
        names = [lay["name"] for lay in obj["layers"]]
        y = np.arange(len(names))
        conv_p = [lay["params"]["conv_total"] for lay in obj["layers"]]
        dense_p = [lay["params"]["dense_total"] for lay in obj["layers"]]
        ax.barh(y - 0.2, conv_p, height=0.4, label="conv layer")
        ax.barh(y + 0.2, dense_p, height=0.4, label="dense layer, same input and output")
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("parameters (weights + biases), log scale")
        ax.set_title(f"conv vs fully connected parameter counts ({obj['suite']} sizes)")
        ax.grid(True, axis="x", which="major", alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / len(names)), ncol=2,
                  frameon=False)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "params.png"), dpi=100, bbox_inches="tight")
        plt.close(fig)
        files.append("params.png")
    return files
