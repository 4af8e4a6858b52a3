"""Score distributions for `dvc plots`: one small histogram table per score column."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl


def histograms(
    scored: pl.DataFrame, columns: Sequence[str], bins: int = 30
) -> dict[str, pl.DataFrame]:
    """Per column: `bin` (lower edge) and `rows`, `kept`, `dropped` counts in that bin.

    Rows with a quality_reason count as dropped; nulls are left out."""
    dropped = scored["quality_reason"].is_not_null().to_numpy()
    out = {}
    for column in columns:
        values = scored[column].cast(pl.Float64).to_numpy()
        present = ~np.isnan(values)
        finite = values[present]
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        all_rows, _ = np.histogram(finite, edges)
        dropped_rows, _ = np.histogram(values[present & dropped], edges)
        out[column] = pl.DataFrame(
            {
                "bin": np.round(edges[:-1], 6),
                "rows": all_rows,
                "kept": all_rows - dropped_rows,
                "dropped": dropped_rows,
            }
        )
    return out
