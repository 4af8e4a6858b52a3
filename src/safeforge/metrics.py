"""Per-stage accounting: nothing is lost silently.

Every stage ends with `rows_in == rows_out + sum(dropped)`; the counts go to metrics/<stage>.json,
dropped rows with their reason to data/<stage>/dropped.parquet. How the run went (seconds,
throughput, row-cache hits and misses) goes to perf/<stage>.json instead: it changes on every
run, and in metrics it would bury the data and quality changes `dvc metrics diff` should show.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from safeforge import io

log = logging.getLogger(__name__)
PERF_DIR = "perf"  # beside metrics/: committed, declared as outs, never as metrics


class StageAccounting:
    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.started = time.perf_counter()
        self.rows_in = 0
        self.rows_out = 0
        self.dropped: Counter[str] = Counter()
        self.dropped_frames: list[pl.DataFrame] = []
        self.extra: dict[str, Any] = {}  # metrics: what the data and the judge are
        self.perf: dict[str, Any] = {}  # perf: how this run went (cache hits, model requests)

    def drop(self, rows: pl.DataFrame, reason: str | pl.Expr, id_column: str) -> None:
        """Record dropped rows; `reason` is a string or an expression giving one per row."""
        if rows.height == 0:
            return
        reason_expr = pl.lit(reason) if isinstance(reason, str) else reason
        frame = rows.select(
            pl.col(id_column).cast(pl.String).alias("row_id"),
            reason_expr.cast(pl.String).alias("reason"),
            pl.struct(pl.all()).struct.json_encode().alias("row_json"),
        )
        for r, n in frame.group_by("reason").len().iter_rows():
            self.dropped[_reason_key(r)] += n
        self.dropped_frames.append(frame)

    def dropped_table(self) -> pl.DataFrame:
        if not self.dropped_frames:
            return pl.DataFrame(
                schema={"row_id": pl.String, "reason": pl.String, "row_json": pl.String}
            )
        return pl.concat(self.dropped_frames)

    def summary(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_dropped": sum(self.dropped.values()),
            "dropped": dict(sorted(self.dropped.items())),
            **self.extra,
        }

    def perf_summary(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        return {
            "stage": self.stage,
            "seconds": round(seconds, 3),
            "rows_per_second": round(self.rows_in / seconds, 2) if seconds > 0 else None,
            **self.perf,
        }

    def finish(self, metrics_path: str | Path, dropped_path: str | Path | None) -> dict[str, Any]:
        """Check the balance and write metrics, perf/<stage>.json (and dropped rows) atomically."""
        summary = self.summary()
        if self.rows_in != self.rows_out + summary["rows_dropped"]:
            raise RuntimeError(
                f"stage {self.stage}: rows_in={self.rows_in} != rows_out={self.rows_out} "
                f"+ dropped={summary['rows_dropped']} ({dict(self.dropped)}): rows were lost"
            )
        if dropped_path is not None:
            io.write_parquet(dropped_path, self.dropped_table())
        io.write_json(metrics_path, summary)
        perf = self.perf_summary()
        io.write_json(Path(PERF_DIR) / f"{self.stage}.json", perf)
        log.info(
            "%s: %d in, %d out, dropped %s in %.1fs",
            self.stage,
            self.rows_in,
            self.rows_out,
            dict(self.dropped) or "nothing",
            perf["seconds"],
        )
        return summary


def _reason_key(reason: str) -> str:
    # "duplicate_of:<id>" counts under "duplicate_of"; the full reason stays in dropped.parquet
    return reason.split(":", 1)[0]
