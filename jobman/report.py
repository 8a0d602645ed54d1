"""Metrics of predictions against labels, the predictions file, and the scatter plot."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def regression_metrics(actual: list[float], predicted: list[float]) -> dict[str, float]:
    y, p = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    if y.shape != p.shape or y.size == 0:
        raise ValueError(f"{p.size} predictions for {y.size} labels")
    residual = y - p
    total = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "mae": float(np.mean(np.abs(residual))),
        "r2": float(1 - np.sum(residual**2) / total) if total > 0 else float("nan"),
        "rows": int(y.size),
    }


def write_predictions(path: Path, actual: list[float], predicted: list[float]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["actual", "predicted"])
        writer.writerows(zip(actual, predicted, strict=True))


def scatter_plot(path: Path, actual: list[float], predicted: list[float], *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(actual, predicted, s=14, alpha=0.7)
    lo, hi = min(min(actual), min(predicted)), max(max(actual), max(predicted))
    ax.plot([lo, hi], [lo, hi], color="tab:red", linewidth=1, label="y = x")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
