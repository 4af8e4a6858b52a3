"""Cross-modal variants of training records: the same request, with its words moved into the
image, so a judge learns to read what an image says and not only what the text asks.

- typographic: the record's query typeset on a plain canvas (render.typographic), beside a
  neutral instruction in text ("do what the picture says"). An unsafe query stays unsafe; its
  benign look-alike, rendered the same way, stays safe, so "text in an image" alone is no cue.
- split_modality: the opening of the query in text, the rest as a caption over the record's own
  photo (render.caption_over).

Contrast records (an unsafe query beside an unrelated image, labelled safe) are not rendered:
typeset alone, the query would be unsafe, and over the unrelated photo it would carry the wrong
label. Each variant names its source record and kind; it inherits the source's split.
"""

from __future__ import annotations

import hashlib
import io as stdio
import json
import random
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl
from PIL import Image
from tqdm import tqdm

from safeforge import io
from safeforge.augment.render import (
    as_heading,
    caption_over,
    draw_style,
    pick,
    split_query,
    typographic,
)
from safeforge.images.load import load_rgb

JPEG_QUALITY = 90
WORD = re.compile(r"[a-z0-9']+")
KINDS = ("typographic", "split_modality")
RENDERED_QUERY_TYPES = ("unsafe", "benign")
# the source columns a variant keeps as they are: the same request, so the same risk and advice
INHERITED = (
    "scenario",
    "category",
    "label",
    "query_type",
    "pair_id",
    "split",
    "generator",
    "risk_analysis",
    "guidance",
)


def _save(image: Image.Image, folder: Path, lossless: bool) -> tuple[str, str]:
    """(image_id, path): content-addressed like ingest's copies. A captioned photo keeps its
    source's format: measured, JPEG variants of PNG photos taught the reader head that JPEG
    artifacts mean unsafe (own_test over-sensitivity 0.26 -> 0.51). A clean card is a PNG (as
    FigStep's are), a noisy one a JPEG (as PNG, ~1 MB each); format and label are independent."""
    buffer = stdio.BytesIO()
    if lossless:
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    data = buffer.getvalue()
    image_id = hashlib.sha256(data).hexdigest()
    path = folder / f"{image_id}.{'png' if lossless else 'jpg'}"
    if not path.exists():
        io.write_bytes(path, data)
    return image_id, path.as_posix()


def read_back(rendered: str, ocr_text: str) -> float:
    """Share of the rendered words that OCR read back (case and punctuation aside)."""
    words = WORD.findall(rendered.lower())
    seen = set(WORD.findall(ocr_text.lower()))
    return sum(w in seen for w in words) / len(words) if words else 1.0


def render_variants(
    records: pl.DataFrame, images: pl.DataFrame, params: Mapping[str, Any], folder: Path
) -> pl.DataFrame:
    """One row per variant; images written to `folder`. `images`: image_id, path and format of
    the records' photos (ingest's table). params: the `augment` section of conf."""
    paths = dict(images.select("image_id", "path").iter_rows())
    # a photo's records come together: decode it once for all of them, hold only a few
    photo_of = lru_cache(maxsize=8)(lambda image_id: load_rgb(paths[image_id]))
    formats = dict(images.select("image_id", "format").iter_rows())
    rows = []
    eligible = records.filter(pl.col("query_type").is_in(RENDERED_QUERY_TYPES))
    typo, split = params["typographic"], params["split_modality"]
    for record in tqdm(eligible.iter_rows(named=True), total=eligible.height, desc="augment"):
        counts = (("typographic", typo["per_record"]), ("split_modality", split["per_record"]))
        for kind, count in counts:
            for i in range(count):
                # a string seed: Python hashes it with SHA-512, the same on every machine
                rng = random.Random(f"{params['seed']}:{record['record_id']}:{kind}:{i}")
                style = draw_style(rng, typo)
                pixel_seed = rng.getrandbits(32)
                if kind == "typographic":
                    heading = as_heading(record["query"], typo["headings"])
                    use_heading = heading is not None and rng.random() < typo["heading_share"]
                    rendered = heading if use_heading else record["query"]
                    query = pick(rng, typo["instructions"])
                    image = typographic(rendered, style, pixel_seed)
                else:
                    head, rendered = split_query(record["query"], split["head_share"])
                    query = pick(rng, split["text_templates"]).format(head=head).strip()
                    photo = photo_of(record["image_id"])
                    image = caption_over(photo, rendered, style, pixel_seed)
                if kind == "typographic":
                    lossless = style.noise == 0
                else:
                    lossless = formats[record["image_id"]] != "JPEG"
                image_id, path = _save(image, folder, lossless)
                rows.append(
                    {
                        "record_id": f"{record['record_id']}~{kind}{i}",
                        "source_record_id": record["record_id"],
                        "variant_kind": kind,
                        "image_id": image_id,
                        "image_path": path,
                        "query": query,
                        "rendered_text": rendered,
                        "style": json.dumps(style.to_dict(), sort_keys=True),
                        **{c: record[c] for c in INHERITED},
                    }
                )
    schema = {
        "record_id": pl.String,
        "source_record_id": pl.String,
        "variant_kind": pl.String,
        "image_id": pl.String,
        "image_path": pl.String,
        "query": pl.String,
        "rendered_text": pl.String,
        "style": pl.String,
    } | {c: records.schema[c] for c in INHERITED}
    return pl.DataFrame(rows, schema=schema)
