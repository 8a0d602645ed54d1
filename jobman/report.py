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


def objective_plot(path: Path, scored: list[tuple[int, float]], best: int | None, objective: str, *,
                   minimize: bool) -> None:
    """The objective of each trial against its number, the best one marked, the best so far as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if scored:
        numbers, values = zip(*scored, strict=True)
        ax.scatter(numbers, values, s=18, label="trial")
        so_far = (np.minimum if minimize else np.maximum).accumulate(values)
        ax.step(numbers, so_far, where="post", color="tab:green", linewidth=1, label="best so far")
        if best is not None:
            ax.scatter([best], [values[numbers.index(best)]], s=80, marker="*", color="tab:red", label=f"best: {best}")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title(f"sweep: {objective} by trial")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
