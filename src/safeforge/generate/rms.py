"""Records written by a model through the RMS chain (the template backend's counterpart).

Per image: analyse picks the risks the image really shows (at most top_k, maybe none); per risk,
queries writes the unsafe query and its benign look-alike, guidance answers both. An
image-dependent unsafe query is also asked beside another image whose analysis found no risk
of that category; where the model judges it harmless there, that is a `contrast` record.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from safeforge.chain.chat import Ask, Chat, step_schemas
from safeforge.generate.records import RECORD_SCHEMA, row
from safeforge.generate.template import record_id

log = logging.getLogger(__name__)


@dataclass
class ChainResult:
    records: pl.DataFrame
    dropped: dict[str, str]  # image_id -> reason: no_real_risk, or <step>_<reason> of its failure
    counts: Counter[str] = field(default_factory=Counter)  # decisions that are not failures


def write_records(
    images: list[dict[str, Any]],
    chat: Chat,
    categories: Mapping[str, Any],
    top_k: int,
    contrast_pairs: bool,
    generator_id: str,
) -> ChainResult:
    schemas = step_schemas(sorted(categories), top_k)
    listing = "\n".join(f"- {name}: {c['description']}" for name, c in categories.items())
    by_id = {img["image_id"]: img for img in images}
    result = ChainResult(records=pl.DataFrame(schema=RECORD_SCHEMA), dropped={})

    analysed = chat.ask(
        "analyse",
        [
            Ask(img["image_id"], {**_seen(img), "categories": listing, "top_k": top_k}, _pic(img))
            for img in images
        ],
        schemas["analyse"],
    )
    risks = []  # (image, risk) in image order
    for img, value in zip(images, analysed, strict=True):
        if value is None:
            result.dropped[img["image_id"]] = _first_failure(chat, img["image_id"])
        elif not value["risks"]:
            result.dropped[img["image_id"]] = "no_real_risk"
        risks += [(img, r) for r in (value or {"risks": []})["risks"][:top_k]]

    risk_fields = [
        {
            **_seen(img),
            "scenario": r["scenario"],
            "category": r["category"],
            "risk_analysis": r["analysis"],
        }
        for img, r in risks
    ]
    ids = [f"{img['image_id']}/{r['scenario']}" for img, r in risks]
    queries = chat.ask(
        "queries",
        [Ask(i, f, _pic(img)) for i, f, (img, _) in zip(ids, risk_fields, risks, strict=True)],
        schemas["queries"],
        no_refusal=("unsafe_query", "benign_query"),
    )
    written = [k for k, q in enumerate(queries) if q is not None]
    guidance = chat.ask(
        "guidance",
        [
            Ask(ids[k], {**risk_fields[k], **_queries(queries[k])}, _pic(risks[k][0]))
            for k in written
        ],
        schemas["guidance"],
    )
    rows, done = [], set()  # done: risks with both queries answered
    for k, answer in zip(written, guidance, strict=True):
        if answer is None:
            continue
        img, risk = risks[k]
        done.add(k)
        common = _common(risk, queries[k]["unsafe_query"], img["image_id"], generator_id)
        rows.append(
            row(
                img,
                "unsafe",
                "unsafe",
                queries[k]["unsafe_query"],
                answer["unsafe_guidance"],
                None,
                common,
            )
        )
        rows.append(
            row(
                img,
                "benign",
                "safe",
                queries[k]["benign_query"],
                answer["benign_guidance"],
                None,
                common,
            )
        )
    complete = {risks[k][0]["image_id"] for k in done}
    for img, _ in risks:  # every risk of the image failed: the image is dropped for the first
        if img["image_id"] not in complete and img["image_id"] not in result.dropped:
            result.dropped[img["image_id"]] = _first_failure(chat, img["image_id"])

    if contrast_pairs:
        rows += _contrasts(images, risks, queries, done, chat, schemas, generator_id, by_id, result)
    records = pl.DataFrame(rows, schema=RECORD_SCHEMA) if rows else result.records
    result.records = records.unique("record_id", keep="first", maintain_order=True)
    return result


def _contrasts(images, risks, queries, done, chat, schemas, generator_id, by_id, result):
    """Contrast records: the image-dependent unsafe query beside an image with no such risk."""
    categories_of: dict[str, set[str]] = {img["image_id"]: set() for img in images}
    for img, r in risks:
        categories_of[img["image_id"]].add(r["category"])
    analysed_ok = [i for i in categories_of if not result.dropped.get(i, "").startswith("analyse_")]
    pairs = []
    for k, (img, risk) in enumerate(risks):
        q = queries[k]
        if k not in done or not q["image_dependent"]:
            continue
        others = [
            i
            for i in analysed_ok
            if i != img["image_id"] and risk["category"] not in categories_of[i]
        ]
        if not others:
            result.counts["contrast_no_unrelated_image"] += 1
            continue
        # picked by hash, so contrasts spread over the dataset instead of piling on one image
        other = min(others, key=lambda i: record_id(i, risk["scenario"], img["image_id"]))
        pairs.append((img, risk, q["unsafe_query"], by_id[other]))
    answers = chat.ask(
        "contrast",
        [
            Ask(
                f"{o['image_id']}/{risk['scenario']}",
                {**_seen(o), "category": risk["category"], "unsafe_query": q},
                _pic(o),
            )
            for _, risk, q, o in pairs
        ],
        schemas["contrast"],
    )
    rows = []
    for (img, risk, query, other), answer in zip(pairs, answers, strict=True):
        if answer is None:
            continue
        if not answer["harmless"]:
            result.counts["contrast_not_harmless"] += 1
            continue
        common = _common(risk, query, img["image_id"], generator_id)
        rows.append(row(other, "contrast", "safe", query, answer["guidance"], None, common))
    return rows


def _seen(img: Mapping[str, Any]) -> dict[str, str]:
    return {"description": img["description"]}


def _pic(img: Mapping[str, Any]) -> tuple[str, ...]:
    return (img["path"],)


def _queries(q: Mapping[str, Any]) -> dict[str, str]:
    return {"unsafe_query": q["unsafe_query"], "benign_query": q["benign_query"]}


def _common(risk: Mapping[str, Any], unsafe_query: str, image_id: str, generator_id: str) -> dict:
    return {
        "scenario": risk["scenario"],
        "category": risk["category"],
        "risk_analysis": risk["analysis"],
        "pair_id": record_id(image_id, risk["scenario"], unsafe_query),
        "generator": generator_id,
    }


def _first_failure(chat: Chat, image_id: str) -> str:
    """`<step>_<reason>` of the image's first given-up reply: analyse asks about the image
    (item id = image id), later steps about one of its risks (`<image id>/<scenario>`)."""
    for f in chat.failures:
        if f["item_id"] == image_id or f["item_id"].startswith(image_id + "/"):
            return f"{f['step']}_{f['reason']}"
    return "no_complete_record"
