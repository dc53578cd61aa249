"""Layer-by-layer heat map of a similarity metric, as a PNG (matplotlib, offline).

The data is the saved query ``layer_heatmap(metric, baseline)``: one cell per (model A layer,
model B layer) with the paired value and its p-value against the baseline. One panel per model
pair; a cell whose p-value is below ``alpha`` carries a star.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from quanta_db.errors import InputError
from quanta_db.store.store import Store


def heatmap_data(store: Store, metric: str, baseline: str = "random_selection") -> pd.DataFrame:
    """The ``layer_heatmap`` rows of ``metric`` against ``baseline``; none is an error."""
    frame = store.query_df("SELECT * FROM layer_heatmap(?, ?)", [metric, baseline])
    if frame.empty:
        raise InputError(f"no {metric} results against {baseline} (run `quanta-db ingest metrics` first)")
    return frame


def render_heatmap_png(frame: pd.DataFrame, output: str | Path | BinaryIO, metric: str, alpha: float = 0.05) -> int:
    """Write the heat map of ``frame`` (rows of ``layer_heatmap``) as PNG to ``output`` (a path or a
    binary file object); returns the panel count."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    panels = list(frame.groupby(["model_a", "model_b"], sort=True))
    # Cells wide enough for their label: about 0.6 inch per layer of the wider model.
    width = max(4.5, 0.6 * frame.layer_b.nunique() + 1.5)
    height = max(4.0, 0.45 * frame.layer_a.nunique() + 1.5)
    figure, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), squeeze=False)
    vmin, vmax = float(np.nanmin(frame.value)), float(np.nanmax(frame.value))
    for axis, ((model_a, model_b), cells) in zip(axes[0], panels):
        layers_a, layers_b = sorted(cells.layer_a.unique()), sorted(cells.layer_b.unique())
        grid = np.full((len(layers_a), len(layers_b)), np.nan)
        for cell in cells.itertuples():
            i, j = layers_a.index(cell.layer_a), layers_b.index(cell.layer_b)
            grid[i, j] = cell.value
            mark = "*" if cell.p_value < alpha else ""
            dark = (cell.value - vmin) < 0.5 * (vmax - vmin)  # viridis is dark at its low end
            axis.text(j, i, f"{cell.value:.2f}{mark}", ha="center", va="center", fontsize=7,
                      color="white" if dark else "black")
        image = axis.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax, origin="lower", aspect="auto")
        axis.set_xticks(range(len(layers_b)), [str(v) for v in layers_b])
        axis.set_yticks(range(len(layers_a)), [str(v) for v in layers_a])
        axis.set_xlabel(f"{model_b} layer")
        axis.set_ylabel(f"{model_a} layer")
        axis.set_title(f"{metric}: {model_a} vs {model_b}")
    figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label=f"{metric} (* p < {alpha})")
    figure.savefig(output, dpi=150, bbox_inches="tight", format="png")
    plt.close(figure)
    return len(panels)


def served(store: Store, metric: str, options: dict) -> tuple[str, bytes]:
    """The heat map as ``serve`` answers ``/reports/heatmap/<metric>?baseline=...``, rendered in
    memory (a served process writes no file)."""
    import io

    image = io.BytesIO()
    render_heatmap_png(heatmap_data(store, metric, options.get("baseline", "random_selection")), image, metric)
    return "image/png", image.getvalue()
