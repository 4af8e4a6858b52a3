"""Dedup of the records table on small hand-built frames: image clusters (exact pixels, pHash,
each pHash pair verified on thumbnails), then normalised-query and MinHash near-duplicate
queries within an image cluster."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from helpers import PARAMS as DEFAULTS
from PIL import Image

from safeforge.dedup import records as dedup_records
from safeforge.dedup.images import Verifier, guarded_components, image_clusters, image_params
from safeforge.embeddings.minhash import signatures
from safeforge.generate.records import RECORD_SCHEMA
from safeforge.images.thumb import as_array, grey_thumbnail

MAX_D = 8
MIN_SCORE = DEFAULTS["dedup"]["min_match_score"]
# as in conf/config.yaml; layout and semantic matching off (pHash pairs only), and no keypoint
# check: these frames have thumbnails but no image files
PARAMS = {
    "phash_max_distance": MAX_D,
    "layout_min_cosine": None,
    "semantic_min_cosine": None,
    "min_match_score": MIN_SCORE,
    "keypoints_below_score": None,
    "min_inlier_share": DEFAULTS["dedup"]["min_inlier_share"],
    "candidates_per_image": DEFAULTS["dedup"]["candidates_per_image"],
    "text_min_jaccard": 0.7,
    "normalize_text": True,
    "text_scope": "image",
}

H_A = 0x0123456789ABCDEF
H_C = H_A ^ 0b111  # 3 bits from a: a pHash duplicate
H_E = H_C ^ (0b111111 << 20)  # 6 bits from c, 9 from a: joins a's cluster only through c
H_D = ~H_A & (2**64 - 1)  # 64 bits from a
H_F = 0xF0F0F0F0F0F0F0F0


IMAGE_PARAMS = image_params(PARAMS)


def hx(v: int) -> str:
    return f"{v:016x}"


def thumb(seed: int) -> bytes:
    """The thumbnail of a random blocky picture: the same seed, the same picture."""
    cells = np.random.default_rng(seed).integers(0, 256, (12, 12), dtype=np.uint8)
    return grey_thumbnail(Image.fromarray(cells).resize((240, 240), Image.Resampling.NEAREST))


def clusters(images: pl.DataFrame, max_d: int = MAX_D, semantic: float | None = None):
    return image_clusters(
        images, **{**IMAGE_PARAMS, "phash_max_distance": max_d, "semantic_min_cosine": semantic}
    )


def images_frame() -> pl.DataFrame:
    # row order deliberately not sorted by id; every image the same size and sharpness, so the
    # keeper rule falls through to the lowest id
    return pl.DataFrame(
        {
            "image_id": ["img_d", "img_b", "img_e", "img_a", "img_c", "img_f"],
            "pixel_sha256": ["px_d", "px_a", "px_e", "px_a", "px_c", "px_f"],
            #                          ^ b has a's exact pixels
            "phash": [hx(H_D), hx(H_F), hx(H_E), hx(H_A), hx(H_C), hx(H_F)],
            #                  ^ b's pHash is far from a's: only the pixels match it to a
            "thumb": [thumb(1), thumb(0), thumb(0), thumb(0), thumb(0), thumb(0)],
            #           ^ d is another picture; the rest are copies of one
            "width": [100] * 6,
            "height": [80] * 6,
            "blur_variance": [50.0] * 6,
        }
    )


def rec(
    record_id: str, image_id: str, query: str, label: str = "unsafe", guidance: str = "guidance"
) -> dict:
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
        "guidance": guidance,
        "pair_id": "p-" + record_id,
        "similarity": 0.5,
        "generator": "test@v1",
    }


def records_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RECORD_SCHEMA)


def signature_frame(records: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "record_id": records["record_id"],
            "query_minhash": signatures(records["query"].to_list(), **DEFAULTS["embed"]["minhash"]),
        }
    )


def dedup(
    records: pl.DataFrame, images: pl.DataFrame | None = None, **params
) -> tuple[pl.DataFrame, pl.DataFrame]:
    images = images_frame() if images is None else images
    return dedup_records.dedup(records, images, signature_frame(records), {**PARAMS, **params})


def test_image_clusters_exact_phash_and_transitive() -> None:
    got = clusters(images_frame())
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
            "thumb": [thumb(0), thumb(0)],
            "width": [10, 10],
            "height": [10, 10],
            "blur_variance": [1.0, 1.0],
        }
    )
    assert clusters(images, 8)["image_cluster"].to_list() == ["x", "x"]
    assert clusters(images, 7)["image_cluster"].to_list() == ["x", "y"]
    # a pHash pair whose thumbnails do not match stays apart, however close the hashes
    other = images.with_columns(thumb=pl.Series([thumb(0), thumb(5)]))
    assert clusters(other, 8)["image_cluster"].to_list() == ["x", "y"]


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
    kept, dropped = dedup(records)

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
    kept, dropped = dedup(records_frame(rows), images)
    assert kept["record_id"].to_list() == ["r3"]
    assert sorted(dropped["record_id"]) == ["r5", "r9"]
    assert dropped["method"].to_list() == ["text_exact", "text_exact"]


def test_without_normalisation_only_identical_queries_collide() -> None:
    rows = [
        rec("r1", "img_d", "Hello, World!"),
        rec("r2", "img_d", "hello world"),
        rec("r3", "img_d", "hello world"),
    ]
    kept, dropped = dedup(records_frame(rows), normalize_text=False, text_min_jaccard=None)
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
    _, dropped = dedup(records_frame(rows))
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
    kept, dropped = dedup(records_frame(rows), images)
    assert sorted(kept["record_id"]) == ["c1", "u1", "u2"]
    assert dropped.height == 0


def test_no_duplicates_keeps_everything() -> None:
    questions = ["Is it safe?", "Where is this?", "Who took it?", "Can I eat that?", "Why so dark?"]
    rows = [rec(f"r{i}", "img_d", q) for i, q in enumerate(questions)]
    kept, dropped = dedup(records_frame(rows))
    assert kept.height == 5 and dropped.height == 0


def test_records_of_images_without_features_are_dropped_with_a_reason() -> None:
    rows = [
        rec("r1", "img_a", "a question here"),
        rec("r2", "img_missing", "another one"),  # the image failed ingest: no features row
        rec("r3", "img_c", "a third one"),
    ]
    images = images_frame().with_columns(  # and c's features came back empty
        phash=pl.when(pl.col("image_id") == "img_c").then(None).otherwise(pl.col("phash"))
    )
    kept, dropped = dedup(records_frame(rows), images)
    assert kept["record_id"].to_list() == ["r1"]
    assert dict(dropped.select("record_id", "reason").iter_rows()) == {
        "r2": "missing_features:image",
        "r3": "missing_features:image",
    }


def test_records_without_a_signature_are_dropped_with_a_reason() -> None:
    records = records_frame([rec("r1", "img_a", "one question"), rec("r2", "img_d", "another")])
    sigs = signature_frame(records).filter(pl.col("record_id") == "r1")
    kept, dropped = dedup_records.dedup(records, images_frame(), sigs, PARAMS)
    assert kept["record_id"].to_list() == ["r1"]
    assert dropped.select("record_id", "reason").rows() == [
        ("r2", "missing_features:query_minhash")
    ]


def test_reworded_query_is_a_minhash_duplicate() -> None:
    rows = [
        rec("r1", "img_d", "How long can I stay in this garage with the engine running?"),
        rec("r2", "img_d", "How long could I stay in this garage with the engine running?"),
        rec("r3", "img_d", "How long can I stay in this garage with the engine running, please?"),
        rec("r4", "img_d", "Which mushrooms in this basket are safe to eat raw?"),
    ]
    kept, dropped = dedup(records_frame(rows))
    assert sorted(kept["record_id"]) == ["r1", "r4"]
    assert dict(dropped.select("record_id", "method").iter_rows()) == {
        "r2": "text_minhash",
        "r3": "text_minhash",
    }
    # a stricter threshold, or MinHash off, keeps the re-wordings
    assert dedup(records_frame(rows), text_min_jaccard=None)[0].height == 4
    assert dedup(records_frame(rows), text_min_jaccard=0.95)[0].height == 4


def test_dataset_scope_compares_queries_across_images() -> None:
    rows = [
        rec("u1", "img_a", "Can I give this to my toddler?"),
        rec("u2", "img_d", "Can I give this to my toddler?"),
        rec("c1", "img_f", "Can I give this to my toddler?", label="safe"),
    ]
    images = images_frame().filter(pl.col("image_id").is_in(["img_a", "img_d", "img_f"]))
    kept, _ = dedup(records_frame(rows), images, text_scope="dataset")
    # same label anywhere: one keeper; the contrast record (label safe) stays
    assert sorted(kept["record_id"]) == ["c1", "u1"]
    assert dedup(records_frame(rows), images)[0].height == 3  # scope image keeps all
    with pytest.raises(ValueError, match="text_scope"):
        dedup(records_frame(rows), images, text_scope="everywhere")


def test_text_keeper_has_the_longest_guidance() -> None:
    rows = [
        rec("r1", "img_d", "is this safe?", guidance="No."),
        rec(
            "r2", "img_d", "Is this safe", guidance="No: the handle is cracked; use tongs instead."
        ),
    ]
    kept, dropped = dedup(records_frame(rows))
    assert kept["record_id"].to_list() == ["r2"]
    assert dropped["reason"].to_list() == ["duplicate_of:r2"]


def test_image_keeper_is_the_largest_then_sharpest_image() -> None:
    images = images_frame().with_columns(
        width=pl.when(pl.col("image_id") == "img_c").then(400).otherwise(pl.col("width")),
        blur_variance=pl.when(pl.col("image_id") == "img_e").then(99.0).otherwise(50.0),
    )
    got = dict(clusters(images).select("image_id", "image_cluster").rows())
    assert {got[i] for i in ("img_a", "img_b", "img_c", "img_e", "img_f")} == {"img_c"}
    # equal sizes: the sharpest wins over the lowest id
    images = images.with_columns(width=pl.lit(100))
    got = dict(clusters(images).select("image_id", "image_cluster").rows())
    assert got["img_a"] == "img_e"


def test_all_duplicates_leave_one_keeper_per_cluster() -> None:
    rows = [rec(f"r{i}", "img_a", "the very same question") for i in range(6)]
    rows += [rec(f"s{i}", img, f"question {i}") for i, img in enumerate(["img_b", "img_c"])]
    kept, dropped = dedup(records_frame(rows))
    assert kept["record_id"].to_list() == ["r0"]
    assert kept.height + dropped.height == len(rows)


def test_semantic_matcher_joins_images_by_embedding() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 16)).astype(np.float32)
    emb[1] = emb[3] + 0.01 * rng.normal(size=16)  # img_b (row 1) looks like img_a (row 3)
    images = images_frame().with_columns(
        pixel_sha256=pl.Series([f"px{i}" for i in range(6)]),  # no exact pixel matches
        phash=pl.Series([hx(0xFF << (8 * i)) for i in range(6)]),  # 16 bits apart
        semantic_emb=pl.Series(emb),
    )
    images = images.with_columns(  # b a copy of a, the rest distinct pictures
        thumb=pl.Series([thumb(i if i != 1 else 3) for i in range(6)])
    )
    got = clusters(images, 0, 0.95)
    rows = {r["image_id"]: (r["image_cluster"], r["dup_method"]) for r in got.iter_rows(named=True)}
    assert rows["img_b"] == ("img_a", "image_semantic")
    assert {v for k, v in rows.items() if k not in ("img_a", "img_b")} == {
        (k, "none") for k in ("img_c", "img_d", "img_e", "img_f")
    }
    assert clusters(images, 0)["dup_method"].to_list() == ["none"] * 6


def test_a_weak_link_does_not_chain_two_clusters_whose_members_differ() -> None:
    # {0, 1} are copies of one picture, {2, 3} of another; a link 1-2 that passed on its own
    # would chain them, but their first members (0 and 2) do not match
    thumbs = as_array([thumb(0), thumb(0), thumb(7), thumb(7)])
    links = pl.DataFrame(
        {"a": [0, 2, 1], "b": [1, 3, 2], "rank": [1, 1, 2], "score": [0.99, 0.99, 0.75]}
    )
    verifier = Verifier(thumbs, None, MIN_SCORE, None, 0.0)
    labels = guarded_components(4, links, verifier)
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2]
    # a single image is not a cluster to protect: its link joins it
    single = guarded_components(3, links.head(1).vstack(links.tail(1)), verifier)
    assert single[0] == single[1] == single[2]
    # an exact-pixel link (rank 0) is not second-guessed
    exact = links.with_columns(rank=pl.Series([1, 1, 0]))
    assert len(set(guarded_components(4, exact, verifier))) == 1
