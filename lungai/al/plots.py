"""Slice-uncertainty profile plot with the selected slices marked (the paper's Fig. 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_profiles(profiles: dict[str, np.ndarray], selected: dict[str, list[int]], path: Path) -> Path:
    """One line per volume (slice index vs mean entropy); selected slices as red dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, profile in profiles.items():
        (line,) = ax.plot(np.arange(len(profile)), profile, label=name)
        picks = [i for i in selected.get(name, []) if 0 <= i < len(profile)]
        if picks:
            ax.plot(picks, np.asarray(profile)[picks], "o", color="red", markersize=6)
    ax.set_xlabel("slice index")
    ax.set_ylabel("slice-level uncertainty (mean entropy)")
    ax.grid(alpha=0.3)
    if len(profiles) <= 10:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
