"""Figures of a run: learning curves, confusion matrix, pruning trade-off (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgevid._atomic import atomic_path


def _figure(*args: Any, **kw: Any):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(*args, **kw)


def _save(plt, fig, path: str | os.PathLike) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Loss and accuracy per epoch, train and val, from ``history.json`` records."""
    plt, fig, (ax_loss, ax_acc) = _figure(1, 2, figsize=(10, 4))
    epochs = [h["epoch"] for h in history]
    for key, style in (("train", "-o"), ("val", "-s")):
        loss = [h.get(f"{key}_loss") for h in history]
        acc = [h.get(f"{key}_acc") for h in history]
        pts = [(e, v) for e, v in zip(epochs, loss, strict=True) if v is not None]
        if pts:
            ax_loss.plot(*zip(*pts, strict=True), style, label=key, markersize=3)
        pts = [(e, v) for e, v in zip(epochs, acc, strict=True) if v is not None]
        if pts:
            ax_acc.plot(*zip(*pts, strict=True), style, label=key, markersize=3)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(plt, fig, path)


def plot_confusion(
    confusion: Sequence[Sequence[int]], labels: Sequence[str], path: str | os.PathLike, title=""
) -> Path:
    """Confusion matrix (rows: true class, columns: predicted), counts in the cells."""
    cm = np.asarray(confusion)
    n = len(labels)
    plt, fig, ax = _figure(figsize=(1.0 + 0.7 * n, 0.8 + 0.6 * n))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    peak = cm.max() if cm.size else 0
    for i in range(n):
        for j in range(n):
            color = "white" if cm[i, j] > peak / 2 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=color)
    return _save(plt, fig, path)


def plot_tradeoff(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Test accuracy vs CPU latency per pruned variant; marker area = parameters."""
    plt, fig, ax = _figure(figsize=(6, 4.5))
    params = np.array([r["params"] for r in rows], np.float64)
    area = 600 * params / params.max()
    ax.scatter([r["latency_ms"] for r in rows], [r["test_acc"] for r in rows], s=area, alpha=0.6)
    for r in rows:
        ax.annotate(f"{r['name']} ({r['layers']}L)", (r["latency_ms"], r["test_acc"]), fontsize=8)
    ax.set(xlabel="CPU latency per clip (ms)", ylabel="test accuracy", title="pruning trade-off")
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)
