"""Stage describe: per image a description plus perception signals (OCR text, NSFW score).

Model calls go through the row cache; metrics report its hits and misses.

Inputs:  data/ingest/images.parquet, data/ingest/images/
Outputs: data/describe/descriptions.parquet, metrics/describe.json
Params:  describe
"""

from pathlib import Path

from safeforge.cache import RowCache
from safeforge.config import stage_params
from safeforge.metrics import StageAccounting
from safeforge.perception.describe import describe
from safeforge.perception.nsfw import NsfwModel
from safeforge.perception.ocr import OcrReader
from safeforge.stage import read_table, run, write_table

PARAMS = ("describe",)
OUT = Path("data/describe")


def main() -> None:
    params = stage_params(PARAMS)["describe"]
    acct = StageAccounting("describe")
    images = read_table("data/ingest/images.parquet")
    acct.rows_in = images.height
    cache = RowCache("perception")
    reader = OcrReader(min_confidence=params["ocr_min_confidence"])
    descriptions = describe(images, reader, NsfwModel(), cache, params["batch_size"])
    acct.rows_out = descriptions.height
    acct.extra.update(cache.stats())
    write_table(OUT / "descriptions.parquet", descriptions, suite="descriptions")
    acct.finish("metrics/describe.json", dropped_path=None)


if __name__ == "__main__":
    run(main)
