"""Small PNG plots embedded in Dagster markdown metadata as data URIs."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _to_markdown(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def score_histogram(series: dict[str, list[float]], *, title: str) -> str:
    """Overlaid histograms (e.g. positives, kept negatives, dropped candidates) as a markdown image."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for label, values in series.items():
        if values:
            ax.hist(values, bins=40, alpha=0.5, label=f"{label} (n={len(values)})", density=True)
    ax.set_xlabel("teacher score")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _to_markdown(fig, title)


def loss_curve(points: list[tuple[int, float]], *, title: str = "training loss") -> str:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if points:
        steps, losses = zip(*points, strict=True)
        ax.plot(steps, losses, marker="." if len(points) < 60 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("InfoNCE loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _to_markdown(fig, title)


def bar_chart(labels: list[str], values: list[float], *, title: str, ylabel: str = "nDCG@10") -> str:
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(labels)), 3.2))
    bars = ax.bar(range(len(labels)), values, color="#4f7cac")
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    for bar, v in zip(bars, values, strict=True):
        ax.annotate(f"{v:.4f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    lo = min(values) if values else 0
    ax.set_ylim(max(0, lo - 0.1), min(1.0, max(values, default=1) + 0.05))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _to_markdown(fig, title)
