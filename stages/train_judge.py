"""Stage train_judge: fit the configured judge on train, select on val, save it.

Inputs:  data/split/dataset.parquet, data/embed/features.parquet
Outputs: data/train_judge/judge/ (safetensors + judge.json), metrics/train_judge.json,
         plots/train_judge/history.csv
Params:  judge
"""

import dataclasses
from pathlib import Path

import polars as pl

from safeforge import io
from safeforge.config import stage_params
from safeforge.judges.probe import ProbeConfig, ProbeJudge
from safeforge.metrics import StageAccounting
from safeforge.stage import read_table, run

PARAMS = ("judge",)
OUT = Path("data/train_judge/judge")


def main() -> None:
    params = dict(stage_params(PARAMS)["judge"])
    kind = params.pop("kind")
    if kind != "probe":
        raise ValueError(f"judge.kind={kind!r}: only 'probe' can be trained yet")
    known = {f.name for f in dataclasses.fields(ProbeConfig)}
    if unknown := set(params) - known:
        raise KeyError(
            f"judge: unknown keys {sorted(unknown)} for the probe judge (known: {sorted(known)})"
        )
    table = read_table("data/split/dataset.parquet").join(
        read_table("data/embed/features.parquet").drop("image_id"), on="record_id", how="inner"
    )
    acct = StageAccounting("train_judge")
    train, val = table.filter(pl.col("split") == "train"), table.filter(pl.col("split") == "val")
    acct.rows_in = acct.rows_out = train.height + val.height
    judge = ProbeJudge.fit(train, val, ProbeConfig(**params))
    judge.save(OUT)
    history = pl.DataFrame(judge.history)
    with io.atomic_path("plots/train_judge/history.csv") as tmp:
        history.write_csv(tmp)
    best = judge.history[judge.best_epoch - 1]
    acct.extra.update(
        train_rows=train.height,
        val_rows=val.height,
        epochs_run=len(judge.history),
        best_epoch=judge.best_epoch,
        selected_on=judge.selected_on,
        best=best,
    )
    acct.finish("metrics/train_judge.json", dropped_path=None)


if __name__ == "__main__":
    run(main)
