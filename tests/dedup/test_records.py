"""Dedup of the records table on small hand-built frames: image clusters (exact pixels, pHash),
then normalised-query duplicates within an image cluster."""

from __future__ import annotations

import polars as pl

from safeforge.dedup.records import dedup, image_clusters
from safeforge.generate.records import RECORD_SCHEMA

MAX_D = 8

H_A = 0x0123456789ABCDEF
H_C = H_A ^ 0b111  # 3 bits from a: a pHash duplicate
H_E = H_C ^ (0b111111 << 20)  # 6 bits from c, 9 from a: joins a's cluster only through c
H_D = ~H_A & (2**64 - 1)  # 64 bits from a
H_F = 0xF0F0F0F0F0F0F0F0


def hx(v: int) -> str:
    return f"{v:016x}"


def images_frame() -> pl.DataFrame:
    # row order deliberately not sorted by id
    return pl.DataFrame(
        {
            "image_id": ["img_d", "img_b", "img_e", "img_a", "img_c", "img_f"],
            "pixel_sha256": ["px_d", "px_a", "px_e", "px_a", "px_c", "px_f"],
            #                          ^ b has a's exact pixels
            "phash": [hx(H_D), hx(H_F), hx(H_E), hx(H_A), hx(H_C), hx(H_F)],
            #                  ^ b's pHash is far from a's: only the pixels match it to a
        }
    )


def rec(record_id: str, image_id: str, query: str, label: str = "unsafe") -> dict:
    return {
        "record_id": record_id,
        "image_id": image_id,
        "image_path": f"data/ingest/images/{image_id}.png",
        "scenario": "s1",
        "category": "physical_injury",
        "label": label,
        "query_type": "unsafe" if label == "unsafe" else "benign",
        "query": query,
        "risk_analysis": "risk",
        "guidance": "guidance text",
        "pair_id": "p-" + record_id,
        "similarity": 0.5,
        "generator": "test@v1",
    }


def records_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RECORD_SCHEMA)


def test_image_clusters_exact_phash_and_transitive() -> None:
    got = image_clusters(images_frame(), MAX_D)
    rows = {r["image_id"]: (r["image_cluster"], r["dup_method"]) for r in got.iter_rows(named=True)}
    assert got["image_id"].to_list() == sorted(rows)  # sorted by id
    assert rows == {
        "img_a": ("img_a", "none"),  # keeper: lowest id of {a, b, c, e}
        "img_b": ("img_a", "image_exact"),  # same pixel_sha256 as a
        "img_c": ("img_a", "image_phash"),  # 3 bits from a
        "img_d": ("img_d", "none"),  # 64 bits from everything
        "img_e": ("img_a", "image_phash"),  # 6 bits from c (9 from a): chained through c
        # f has b's pHash but b is in a's cluster, so f joins it too
        "img_f": ("img_a", "image_phash"),
    }


def test_image_clusters_distance_threshold() -> None:
    images = pl.DataFrame(
        {
            "image_id": ["x", "y"],
            "pixel_sha256": ["p1", "p2"],
            "phash": [hx(H_A), hx(H_A ^ 0xFF)],  # exactly 8 bits apart
        }
    )
    assert image_clusters(images, 8)["image_cluster"].to_list() == ["x", "x"]
    assert image_clusters(images, 7)["image_cluster"].to_list() == ["x", "y"]


def test_dedup_drops_image_and_text_duplicates() -> None:
    records = records_frame(
        [
            rec("r01", "img_a", "Hello, World!"),
            rec("r02", "img_a", "hello   world"),  # same normalised query, same label, same image
            rec("r03", "img_a", "hello world", label="safe"),  # same query, other label: kept
            rec("r04", "img_b", "Something else entirely"),  # image b exact dup of a
            rec("r05", "img_c", "A question on c"),  # image c pHash dup of a
            rec("r06", "img_d", "HELLO world!!"),  # same query beside a different image: kept
            rec("r07", "img_d", "A different question"),
            rec("r00", "img_e", "hello world"),  # e chained into a's cluster
        ]
    )
    kept, dropped = dedup(records, images_frame(), MAX_D, normalize_text=True)

    assert kept.height + dropped.height == records.height
    assert sorted(kept["record_id"]) == ["r01", "r03", "r06", "r07"]
    reasons = {r["record_id"]: (r["reason"], r["method"]) for r in dropped.iter_rows(named=True)}
    assert reasons == {
        "r04": ("duplicate_of:img_a", "image_exact"),
        "r05": ("duplicate_of:img_a", "image_phash"),
        "r00": ("duplicate_of:img_a", "image_phash"),
        # the reason's target is checked in test_text_duplicate_reason_names_the_keeper
        "r02": (reasons["r02"][0], "text_exact"),
    }
    # kept rows keep every record column, gain image_cluster and lose the helpers
    assert set(kept.columns) == {*RECORD_SCHEMA, "image_cluster"}
    assert kept.filter(pl.col("record_id") == "r06")["image_cluster"].item() == "img_d"
    assert {"reason", "method", "record_id", "query"} <= set(dropped.columns)
    # the surviving rows are the originals, unchanged
    assert (
        kept.select(*RECORD_SCHEMA)
        .sort("record_id")
        .equals(
            records.filter(pl.col("record_id").is_in(kept["record_id"].to_list())).sort("record_id")
        )
    )


def test_text_keeper_is_lowest_record_id_regardless_of_row_order() -> None:
    images = images_frame()
    rows = [
        rec("r9", "img_d", "is this safe?"),
        rec("r3", "img_d", "Is this SAFE"),
        rec("r5", "img_d", "is  this  safe ."),
    ]
    kept, dropped = dedup(records_frame(rows), images, MAX_D, normalize_text=True)
    assert kept["record_id"].to_list() == ["r3"]
    assert sorted(dropped["record_id"]) == ["r5", "r9"]
    assert dropped["method"].to_list() == ["text_exact", "text_exact"]


def test_without_normalisation_only_identical_queries_collide() -> None:
    rows = [
        rec("r1", "img_d", "Hello, World!"),
        rec("r2", "img_d", "hello world"),
        rec("r3", "img_d", "hello world"),
    ]
    kept, dropped = dedup(records_frame(rows), images_frame(), MAX_D, normalize_text=False)
    assert sorted(kept["record_id"]) == ["r1", "r2"]
    assert dropped["record_id"].to_list() == ["r3"]


def test_text_duplicate_reason_names_the_keeper() -> None:
    rows = [
        rec("r9", "img_d", "is this safe?"),
        rec("r3", "img_d", "Is this SAFE"),
        rec("r5", "img_d", "is  this  safe ."),
        rec("q1", "img_a", "Hello, World!"),
        rec("q2", "img_a", "hello world"),
    ]
    _, dropped = dedup(records_frame(rows), images_frame(), MAX_D, normalize_text=True)
    reasons = dict(dropped.select("record_id", "reason").iter_rows())
    # r3 is the lowest record_id of {r3, r5, r9}; q1 of {q1, q2}
    assert reasons == {
        "r5": "duplicate_of:r3",
        "r9": "duplicate_of:r3",
        "q2": "duplicate_of:q1",
    }


def test_contrast_query_beside_other_image_is_not_a_duplicate() -> None:
    # the unsafe query and its contrast copy (same text, another image, label safe), plus the
    # same unsafe text on a third, unrelated image: nothing is dropped
    rows = [
        rec("u1", "img_a", "Can I give this to my toddler?"),
        rec("c1", "img_d", "Can I give this to my toddler?", label="safe"),
        rec("u2", "img_d", "Can I give this to my toddler?"),
    ]
    images = images_frame().filter(pl.col("image_id").is_in(["img_a", "img_d"]))
    kept, dropped = dedup(records_frame(rows), images, MAX_D, normalize_text=True)
    assert sorted(kept["record_id"]) == ["c1", "u1", "u2"]
    assert dropped.height == 0


def test_no_duplicates_keeps_everything() -> None:
    rows = [rec(f"r{i}", "img_d", f"question number {i}") for i in range(5)]
    kept, dropped = dedup(records_frame(rows), images_frame(), MAX_D, normalize_text=True)
    assert kept.height == 5 and dropped.height == 0


def test_records_of_unknown_images_are_not_lost() -> None:
    rows = [rec("r1", "img_a", "a question here"), rec("r2", "img_missing", "another one")]
    try:
        kept, dropped = dedup(records_frame(rows), images_frame(), MAX_D, normalize_text=True)
    except ValueError:
        return  # refusing loudly is also acceptable
    assert kept.height + dropped.height == 2
