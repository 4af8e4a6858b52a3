"""Stage describe: per image a description plus perception signals (OCR text, NSFW score).

With `describe.vlm` set (`-S describer=hf|openai|vllm`), a VLM writes each description through
the prompt `prompts.describe`; otherwise, and for images whose VLM reply is unusable twice, the
description is the caption. Model calls go through the row cache; metrics report its hits.

Inputs:  data/ingest/images.parquet, data/ingest/images/
Outputs: data/describe/descriptions.parquet, metrics/describe.json
Params:  describe, prompts.system, prompts.describe, prompts.retry
"""

import logging
from pathlib import Path

from safeforge.cache import RowCache
from safeforge.config import stage_params
from safeforge.executors import use_configured_executor
from safeforge.metrics import StageAccounting
from safeforge.perception.describe import describe, describer_chat
from safeforge.perception.nsfw import NsfwModel
from safeforge.perception.ocr import OcrReader
from safeforge.stage import read_table, run, write_table

PARAMS = ("describe", "prompts.system", "prompts.describe", "prompts.retry")
OUT = Path("data/describe")
log = logging.getLogger("stages.describe")


def main() -> None:
    use_configured_executor()  # local or ray: where row-cache misses are computed
    p = stage_params(PARAMS)
    params = p["describe"]
    acct = StageAccounting("describe")
    images = read_table("data/ingest/images.parquet")
    acct.rows_in = images.height
    cache = RowCache("perception")
    chat = describer_chat(p, cache)
    reader = OcrReader(min_confidence=params["ocr_min_confidence"])
    descriptions = describe(images, reader, NsfwModel(), cache, params["batch_size"], chat)
    acct.rows_out = descriptions.height
    acct.perf.update(cache.stats())
    if chat is not None:
        acct.perf["backend_faults"] = chat.backend_faults()
        fallback = descriptions.filter(descriptions["describer"] == "caption+ocr").height
        if fallback:
            log.warning(
                "describe: %d images kept their caption: VLM replies unusable twice (%s)",
                fallback,
                chat.failure_counts(),
            )
        acct.extra.update(
            vlm_requests=chat.requests,
            vlm_described=descriptions.height - fallback,
            vlm_fallback_to_caption=fallback,
            malformed_outputs=chat.failure_counts(),
        )
    write_table(OUT / "descriptions.parquet", descriptions, suite="descriptions")
    acct.finish("metrics/describe.json", dropped_path=None)


if __name__ == "__main__":
    run(main)
