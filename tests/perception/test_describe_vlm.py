"""describe with a VLM: its description where the reply is usable, the caption where it is not."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
from helpers import PARAMS, conf_option, sampling
from PIL import Image

from safeforge.backends import make_backend
from safeforge.backends.base import Backend, Reply
from safeforge.cache import RowCache
from safeforge.chain.chat import Chat, Prompts
from safeforge.config import compose
from safeforge.perception.describe import describe
from safeforge.perception.nsfw import NsfwModel
from safeforge.perception.ocr import OcrReader


class OneGoodDescription(Backend):
    """Describes images well, except any whose request carries the blank picture's bytes."""

    name, model_id, revision, supports_images = "scripted", "scripted-vlm", "1", True

    def complete(self, requests):
        return [
            Reply("I cannot see anything.")
            if "blank" in r.images[0]
            else Reply(json.dumps({"description": "A red square on a table."}))
            for r in requests
        ]


def images(tmp_path) -> pl.DataFrame:
    rows = []
    for name, colour in (("red", (200, 20, 20)), ("blank", (255, 255, 255))):
        path = tmp_path / f"{name}.png"
        Image.fromarray(np.full((64, 64, 3), colour, np.uint8)).save(path)
        rows.append({"image_id": name * 8, "path": str(path), "caption": f"{name}: a photo"})
    return pl.DataFrame(rows)


def run(tmp_path, backend: Backend, max_tokens: int = 32) -> tuple[pl.DataFrame, Chat]:
    prompts = Prompts.from_params(compose()["prompts"])
    cache = RowCache("t", tmp_path / "cache")
    chat = Chat(backend, prompts, cache, sampling(max_tokens=max_tokens), 8)
    reader = OcrReader(PARAMS["describe"]["ocr_min_confidence"])
    table = describe(images(tmp_path), reader, NsfwModel(), cache, 4, chat)
    return table, chat


def test_the_vlm_describes_and_a_failed_reply_keeps_the_caption(tmp_path) -> None:
    table, chat = run(tmp_path, OneGoodDescription())
    rows = {r["image_id"]: r for r in table.to_dicts()}
    assert rows["redredredredredredredred"]["description"] == "A red square on a table."
    assert rows["redredredredredredredred"]["describer"] == "scripted-vlm+ocr"
    blank = rows["blankblankblankblankblankblankblankblank"]
    assert (blank["description"], blank["describer"]) == ("blank: a photo", "caption+ocr")
    assert chat.failure_counts() == {"describe/invalid_json": 1}  # asked twice, then given up


def test_a_real_tiny_vlm_runs_through_describe(tiny_vlm_folder, tmp_path) -> None:
    # random weights write no usable JSON: every image keeps its caption, nothing crashes
    vlm = make_backend(conf_option("generator", "hf", model=str(tiny_vlm_folder), images=True))
    table, chat = run(tmp_path, vlm, max_tokens=6)
    assert table.height == 2 and set(table["describer"]) == {"caption+ocr"}
    assert sum(chat.failure_counts().values()) == 2
    assert chat.requests == 4  # each image asked, then asked again once
