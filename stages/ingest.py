"""Stage ingest: decode, verify, normalise (EXIF rotation, RGB, PNG) and hash the source images.

Unreadable or unsafe files (not an image, truncated, decompression bomb, too small, identical
bytes to another file, a link out of the source folder) are quarantined: listed in dropped.parquet with their reason, never a crash.

Inputs:  ${source.dir}
Outputs: data/ingest/images.parquet, data/ingest/images/, data/ingest/dropped.parquet,
         metrics/ingest.json
Params:  source, ingest
"""

from pathlib import Path

import polars as pl
from tqdm.auto import tqdm

from safeforge.config import stage_params
from safeforge.images.ingest import ingest_files, list_source
from safeforge.metrics import StageAccounting
from safeforge.stage import run, write_table

PARAMS = ("source", "ingest")
OUT = Path("data/ingest")


def main() -> None:
    p = stage_params(PARAMS)
    source, params = p["source"], p["ingest"]
    if source["dir"] in (None, "???"):
        raise ValueError("source.dir is not set: `dvc exp run -S source.dir=/path/to/images`")
    acct = StageAccounting("ingest")
    files = list_source(Path(source["dir"]))
    acct.rows_in = len(files)
    rows, rejected = ingest_files(
        tqdm(files, desc="ingest"),
        OUT / "images",
        source["kind"],
        params["max_pixels"],
        params["min_side"],
    )
    if rejected:
        dropped = pl.DataFrame(rejected)
        acct.drop(dropped, pl.col("reason"), id_column="source_path")
    images = pl.DataFrame(rows, schema=list(rows[0]) if rows else None)
    if images.height == 0:
        raise ValueError(
            f"no usable image in {source['dir']} ({len(files)} files, all quarantined)"
        )
    acct.rows_out = images.height
    write_table(OUT / "images.parquet", images, suite="images")
    acct.finish("metrics/ingest.json", OUT / "dropped.parquet")


if __name__ == "__main__":
    run(main)
