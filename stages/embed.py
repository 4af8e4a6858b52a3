"""Stage embed: the expensive per-row features, kept apart so threshold sweeps rerun only the
cheap stages after it: query and description embeddings, image embeddings, query MinHash
signatures; per image, perceptual hash, size, sharpness and contrast (with ingest's pixel hash).

Inputs:  data/generate/records.parquet, data/describe/descriptions.parquet,
         data/ingest/images.parquet, data/ingest/images/
Outputs: data/embed/features.parquet (per record), data/embed/image_features.parquet
         (per image), metrics/embed.json
Params:  embed
"""

from pathlib import Path

from safeforge.cache import RowCache
from safeforge.config import stage_params
from safeforge.embeddings.features import record_features
from safeforge.embeddings.text import TextEncoder
from safeforge.executors import use_configured_executor
from safeforge.metrics import StageAccounting
from safeforge.perception.nsfw import NsfwModel
from safeforge.stage import read_table, run, write_table

PARAMS = ("embed",)
OUT = Path("data/embed")


def main() -> None:
    use_configured_executor()  # local or ray: where row-cache misses are computed
    params = stage_params(PARAMS)["embed"]
    records = read_table("data/generate/records.parquet")
    acct = StageAccounting("embed")
    acct.rows_in = records.height
    cache = RowCache("embed")
    features, image_features = record_features(
        records,
        read_table("data/describe/descriptions.parquet"),
        read_table("data/ingest/images.parquet"),
        TextEncoder(),
        NsfwModel(),
        cache,
        params,
    )
    acct.rows_out = features.height
    acct.perf.update(cache.stats())
    write_table(OUT / "features.parquet", features, suite="features")
    write_table(OUT / "image_features.parquet", image_features, suite="image_features")
    acct.finish("metrics/embed.json", dropped_path=None)


if __name__ == "__main__":
    run(main)
