"""``lungai demo`` section: entropy overlay, slice-uncertainty profile and ranked slices for the bundled chest CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungai.al.pipeline import DEFAULT_MODEL, load, plot_profiles, rank, score_pool, write_scores
from lungai.intensity import window_to_unit
from lungai.io import write_table_csv
from lungai.lungfield import lung_field
from lungai.plotting import radiological_view
from lungai.progress import CancelToken, ProgressCallback
from lungai.sample_data import ATTRIBUTION, chest_ct

BUDGET = 5
VISIBLE_ENTROPY = 0.15  # nats; up to it the CT stays unobscured (the model's floor is about 0.2 nats)


def save_entropy_overlay(
    path: Path, image2d: np.ndarray, entropy2d: np.ndarray, lungs2d: np.ndarray, title: str
) -> Path:
    """Two panels of one slice: the CT alone, and the CT under the entropy (transparent up to
    :data:`VISIBLE_ENTROPY`, then more opaque up to ln 2 nats); both with the lung contour (white) from the
    shared lung field."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    grey = window_to_unit(image2d)
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.6), gridspec_kw={"width_ratios": [1, 1.22]})
    norm = Normalize(0.0, float(np.log(2)))
    rgba = plt.get_cmap("inferno")(norm(entropy2d))
    rgba[..., 3] = 0.9 * np.clip((entropy2d - VISIBLE_ENTROPY) / (np.log(2) - VISIBLE_ENTROPY), 0, 1)
    for axis, overlay in zip(axes, (None, rgba)):
        axis.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if overlay is not None:
            axis.imshow(overlay, interpolation="nearest")
        if lungs2d.any():
            axis.contour(lungs2d.astype(float), levels=[0.5], colors=["white"], linewidths=1.0)
        axis.axis("off")
    axes[0].set_title("CT (lung window), lung contour white", fontsize=9)
    axes[1].set_title(title, fontsize=9)
    shown = plt.cm.ScalarMappable(norm=norm, cmap="inferno")
    fig.colorbar(shown, ax=axes[1], label="predictive entropy [nats]", fraction=0.046, pad=0.02)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_demo(
    out_dir: Path, *, device: str = "auto", progress: ProgressCallback | None = None, cancel: CancelToken | None = None
):
    from lungai.demo import DemoSection

    folder = Path(out_dir) / "active_learning"
    ct = chest_ct()
    loaded = load(device=device)
    model, header = loaded.network, loaded.header
    scores = score_pool(model, {"CTChest4": ct}, n_samples=20, progress=progress, cancel=cancel)
    score = scores["CTChest4"]
    files = write_scores(folder, {"CTChest4": ct}, scores, overwrite=True)
    rows = rank("uss", {"CTChest4": score.profile}, {"CTChest4": score.volume_uncertainty}, None, BUDGET)
    table = write_table_csv(folder / "uss_ranked_slices.csv", rows, overwrite=True)
    picks = [r["slice"] for r in rows]
    profile_png = plot_profiles({"CTChest4": score.profile}, {"CTChest4": picks}, folder / "slice_profile.png")
    top = picks[0]
    view = lambda a: radiological_view(a, ct.direction, "axial", top)  # noqa: E731
    lungs = lung_field(ct).lungs
    inside = float(score.entropy[top][lungs[top]].sum() / max(score.entropy[top].sum(), 1e-12))
    overlay = save_entropy_overlay(
        folder / "entropy_overlay.png",
        view(ct.array),
        view(score.entropy),
        view(lungs),
        f"Slice {top}: entropy (most uncertain USS candidate, {score.profile[top]:.3f} nats)",
    )
    text = (
        f"MC-dropout predictive entropy (20 samples, model {DEFAULT_MODEL} v{header.get('version')}) of the "
        f"bundled chest CT. {ATTRIBUTION} Volume-level uncertainty {score.volume_uncertainty:.4f} nats. "
        f"The USS candidates are the local maxima of the slice profile at least 5 slices apart (red dots); the "
        f"table ranks the {len(rows)} slices a user would annotate next. The model was trained on volumes "
        "simulated from this same scan (see bench/al for the strategy comparison). "
        f"On slice {top}, {100 * inside:.0f} % of the entropy lies inside the lungs (white contour, from the shared "
        "HU lung field) and the rest outside them."
    )
    reading = (
        "The ranking says which slices a human should label next to teach the lung model most; it is not a "
        "finding. High entropy marks where the model is unsure of the lung boundary, not where disease is; "
        "uncertainty outside the lungs means the model has not learned where the lungs end there."
    )
    return DemoSection(
        "Active Learning Sampler: slices to annotate next",
        text,
        images=[overlay, profile_png],
        files=files,
        tables=[table],
        reading=reading,
    )
