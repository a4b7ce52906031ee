"""Figure of a model's RF parameter histograms next to the published V1 tables."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from v1sweep.rf.empirical import DEFAULT_PRESET, Preset, get_preset
from v1sweep.rf.params import RFParams
from v1sweep.rf.similarity import rf_similarity


def _bars(ax, values: np.ndarray, edges, counts, label: str, log: bool, score: float | None) -> None:
    e = np.asarray(edges, dtype=np.float64)
    data = np.asarray(counts, dtype=np.float64)
    data = data / data.sum()
    if len(values):
        model = np.histogram(np.clip(values, e[0], e[-1]), bins=e)[0].astype(float)
        model = model / max(model.sum(), 1.0)
    else:
        model = np.zeros_like(data)
    ax.stairs(data, e, fill=True, alpha=0.35, color="tab:gray", label="V1 data")
    ax.stairs(model, e, linewidth=2, color="tab:blue", label="model")
    if log:
        ax.set_xscale("log")
    title = label if score is None else f"{label}  (sim {score:.3f})"
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("fraction", fontsize=8)


def plot_rf_histograms(rf: RFParams, path: str | Path, preset: str | Preset = DEFAULT_PRESET) -> Path:
    """Write a PNG with, per property, the model's histogram over the published one (on the data's
    bins), the nx/ny joint histograms side by side, and the sf-nx scatter. Returns the path."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg
    from matplotlib.ticker import NullFormatter

    p = get_preset(preset)
    sims = rf_similarity(rf, p)
    fig = Figure(figsize=(16, 7.5))
    axes = fig.subplots(2, 4)
    ax = axes.ravel()
    lo = p.orientation.edges[0]
    theta = lo + np.mod(rf.theta - lo, 180.0)
    _bars(ax[0], theta, p.orientation.edges, p.orientation.counts, "orientation (deg)", False,
          sims.get("rf_similarity/orientation"))
    _bars(ax[1], rf.sf[~rf.complex], p.sf_simple.edges, p.sf_simple.counts, "SF simple (cpd)", True,
          sims.get("rf_similarity/sf_simple"))
    _bars(ax[2], rf.sf[rf.complex], p.sf_complex.edges, p.sf_complex.counts, "SF complex (cpd)", True,
          sims.get("rf_similarity/sf_complex"))
    j = p.nxny
    _bars(ax[3], rf.nx, j.nx.edges, j.nx.counts, "nx", True, sims.get("rf_similarity/nx"))
    _bars(ax[4], rf.ny, j.ny.edges, j.ny.counts, "ny", True, sims.get("rf_similarity/ny"))
    ex, ey = np.asarray(j.nx_edges), np.asarray(j.ny_edges)
    model = np.histogram2d(np.clip(rf.nx, ex[0], ex[-1]), np.clip(rf.ny, ey[0], ey[-1]), bins=[ex, ey])[0]
    data = np.asarray(j.counts, dtype=np.float64)
    vmax = max((data / data.sum()).max(), (model / max(model.sum(), 1)).max())
    for axis, hist, name in ((ax[5], data, "V1 data"), (ax[6], model, "model")):
        mesh = axis.pcolormesh(ey, ex, hist / max(hist.sum(), 1), vmin=0, vmax=vmax, cmap="viridis")
        axis.set_xscale("log")
        axis.set_yscale("log")
        for sub in (axis.xaxis, axis.yaxis):
            sub.set_minor_formatter(NullFormatter())
        axis.set_xlabel("ny", fontsize=8)
        axis.set_ylabel("nx", fontsize=8)
        score = sims.get("rf_similarity/nxny")
        axis.set_title(f"nx-ny joint, {name}" + (f"  (sim {score:.3f})" if name == "model" else ""), fontsize=9)
    fig.colorbar(mesh, ax=ax[6], fraction=0.046)
    ax[7].scatter(rf.sf[~rf.complex], rf.nx[~rf.complex], s=4, alpha=0.5, label="simple")
    ax[7].scatter(rf.sf[rf.complex], rf.nx[rf.complex], s=4, alpha=0.5, label="complex")
    ax[7].set_xscale("log")
    ax[7].set_yscale("log")
    ax[7].set_xlabel("SF (cpd)", fontsize=8)
    ax[7].set_ylabel("nx", fontsize=8)
    r = sims.get("rf_spearman/sf_nx")
    ax[7].set_title("sf-nx" + (f"  (Spearman {r:.2f}, sim {sims['rf_similarity/sf_nx']:.3f})" if r is not None
                                else ""), fontsize=9)
    ax[7].legend(fontsize=7)
    ax[0].legend(fontsize=7)
    fig.suptitle(f"RF parameters vs V1 ({p.name}): {rf.n_simple} simple + {rf.n_complex} complex units, "
                 f"rf_similarity {sims['rf_similarity']:.3f}", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
