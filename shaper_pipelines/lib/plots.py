"""PNG plots for the command line and for Dagster metadata (where they are embedded as markdown)."""

from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display here, in CI or in a Dagster run worker
    import matplotlib.pyplot as plt

    return plt


def profile_plot_png(series: Sequence[tuple[str, np.ndarray, np.ndarray, str]], *, title: str = "") -> bytes:
    """One panel per ``(label, epoch_seconds, values, unit)``, stacked, sharing nothing but width."""
    plt = _pyplot()
    import pandas as pd

    fig, axes = plt.subplots(len(series), 1, figsize=(10, 2.2 * len(series) + 0.6), squeeze=False)
    for ax, (label, ts, values, unit) in zip(axes[:, 0], series):
        # Thousands of points per pixel look like a solid block; a plot wants at most a few thousand.
        stride = max(1, len(ts) // 4000)
        ax.plot(pd.to_datetime(ts[::stride], unit="s", utc=True), values[::stride], lw=1.0, color="#1f77b4")
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    return _png(plt, fig, title)


def _png(plt, fig, title: str) -> bytes:
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def png_markdown(png: bytes, alt: str = "plot") -> str:
    """Markdown that shows ``png`` inline, as Dagster's UI renders metadata markdown."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def overlay_plot_png(panels: Sequence[tuple[str, Sequence[tuple[str, np.ndarray, np.ndarray]]]], *,
                     title: str = "") -> bytes:
    """One panel per ``(label, [(line label, epoch_seconds, values), ...])``: lines to compare,
    such as a derived profile over the history it came from."""
    plt = _pyplot()
    import pandas as pd

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.2 * len(panels) + 0.6), squeeze=False)
    for ax, (label, lines) in zip(axes[:, 0], panels):
        for name, ts, values in lines:
            stride = max(1, len(ts) // 4000)
            ax.plot(pd.to_datetime(ts[::stride], unit="s", utc=True), values[::stride], lw=1.0, label=name)
        ax.set_title(label, fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    return _png(plt, fig, title)


def response_plot_png(targets: Sequence[tuple[str, dict]]) -> bytes:
    """Per target ``(name, parts)``: how its service responded to load in its rehearsals. ``parts``
    holds ``points`` (offered, utilisation, latency_ms: the measured seconds), ``curve`` (the same
    columns, fitted), ``objective_ms`` and ``capacity`` (a vertical line where the objective breaks)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(targets), 2, figsize=(10, 2.6 * len(targets) + 0.6), squeeze=False)
    for (ax_u, ax_l), (name, parts) in zip(axes, targets):
        points, curve = parts["points"], parts["curve"]
        ax_u.scatter(points["offered"], points["utilisation"], s=6, alpha=0.4, label="measured")
        ax_u.plot(curve["offered"], curve["utilisation"], color="#d62728", lw=1.2, label="fitted")
        ax_u.set_title(f"{name}: utilisation", fontsize=9, loc="left")
        ax_l.scatter(points["offered"], points["latency_ms"], s=6, alpha=0.4, label="measured")
        ax_l.plot(curve["offered"], curve["latency_ms"], color="#d62728", lw=1.2, label="fitted")
        ax_l.axhline(parts["objective_ms"], color="grey", ls="--", lw=1, label="objective")
        ax_l.set_yscale("log")
        ax_l.set_title(f"{name}: latency (ms)", fontsize=9, loc="left")
        for ax in (ax_u, ax_l):
            ax.axvline(parts["capacity"], color="black", ls=":", lw=1, label="capacity")
            ax.set_xlabel("offered load per instance", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper left")
    return _png(plt, fig, "")
