"""Stage dedup: image clusters (exact pixels, pHash, embedding cosine), then repeated queries
(normalised text, MinHash LSH). One keeper per cluster by the rule in safeforge/dedup/records.py;
every other row is dropped as duplicate_of:<keeper> with the method that matched.

Inputs:  data/generate/records.parquet, data/embed/features.parquet (query_minhash),
         data/embed/image_features.parquet
Outputs: data/dedup/kept.parquet, data/dedup/dropped.parquet, metrics/dedup.json,
         plots/dedup/clusters.csv
Params:  dedup
"""

from pathlib import Path

import polars as pl

from safeforge import io
from safeforge.config import stage_params
from safeforge.dedup.records import dedup
from safeforge.metrics import StageAccounting
from safeforge.stage import read_table, run, scan_table, write_table

PARAMS = ("dedup",)
OUT = Path("data/dedup")


def main() -> None:
    params = stage_params(PARAMS)["dedup"]
    records = read_table("data/generate/records.parquet")
    signatures = scan_table("data/embed/features.parquet").select("record_id", "query_minhash")
    images = scan_table("data/embed/image_features.parquet")
    acct = StageAccounting("dedup")
    acct.rows_in = records.height
    kept, dropped = dedup(records, images, signatures, params)
    if records.height and not kept.height:
        raise ValueError(
            f"dedup kept none of {records.height} records: "
            f"{dict(dropped.group_by('method').len().iter_rows())}"
        )
    acct.drop(dropped, pl.col("reason"), "record_id")
    acct.rows_out = kept.height
    acct.extra["dropped_by_method"] = dict(sorted(dropped.group_by("method").len().iter_rows()))
    # cluster sizes (kept row + its duplicates) for `dvc plots`
    sizes = (
        dropped.filter(pl.col("reason").str.starts_with("duplicate_of:"))
        .group_by(keeper=pl.col("reason").str.strip_prefix("duplicate_of:"))
        .len()
        .group_by(cluster_size=pl.col("len") + 1)
        .len("clusters")
        .sort("cluster_size")
    )
    acct.extra["duplicate_clusters"] = int(sizes["clusters"].sum())
    write_table(OUT / "kept.parquet", kept, suite="kept")
    with io.atomic_path("plots/dedup/clusters.csv") as tmp:
        sizes.write_csv(tmp)
    acct.finish("metrics/dedup.json", OUT / "dropped.parquet")


if __name__ == "__main__":
    run(main)
