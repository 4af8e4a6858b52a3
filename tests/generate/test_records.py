"""Record generation with hand-made fit scores: which scenarios each image gets, the
unsafe/benign/contrast records they produce, and the row cache around the generator."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from safeforge.cache import RowCache
from safeforge.generate.records import RECORD_SCHEMA, build_records, choose, fit_scores
from safeforge.generate.scenarios import Scenario
from safeforge.generate.template import TemplateGenerator, record_id

# ---------------------------------------------------------------- fit_scores / choose


def test_fit_scores_takes_the_best_trigger() -> None:
    desc = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    triggers = [
        np.array([[1.0, 0.0]]),  # one trigger
        np.array([[0.0, 1.0], [0.8, 0.6]]),  # two triggers: the best cosine counts
    ]
    got = fit_scores(desc, triggers)
    # image 2 vs scenario 1: max(0.8, 0.6*0.8 + 0.8*0.6 = 0.96)
    assert got == pytest.approx(np.array([[1.0, 0.8], [0.0, 1.0], [0.6, 0.96]]))


def test_choose_top_k_min_similarity_and_max_gap() -> None:
    scores = np.array(
        [
            [0.90, 0.85, 0.80, 0.10],  # three within the gap: top_k=2 keeps the best two
            [0.50, 0.20, 0.35, 0.45],  # floor = max(0.3, 0.5 - 0.1) = 0.4 -> 0 and 3
            [0.29, 0.10, 0.00, 0.28],  # nothing reaches min_similarity
            [0.30, 0.30, 0.30, 0.30],  # ties: exactly at the floor counts; stable order
            [0.95, 0.84, 0.20, 0.10],  # 0.84 < 0.95 - 0.1: a weak second fit is dropped
        ]
    )
    assert choose(scores, top_k=2, min_similarity=0.3, max_gap=0.1) == [
        [0, 1],
        [0, 3],
        [],
        [0, 1],
        [0],
    ]
    assert choose(scores, top_k=4, min_similarity=0.3, max_gap=0.1)[0] == [0, 1, 2]
    assert choose(scores, top_k=4, min_similarity=0.3, max_gap=0.1)[3] == [0, 1, 2, 3]
    # a wide gap lets min_similarity decide alone
    assert choose(scores, top_k=4, min_similarity=0.3, max_gap=1.0)[1] == [0, 3, 2]
    assert choose(scores, top_k=1, min_similarity=0.0, max_gap=1.0) == [[0], [0], [0], [0], [0]]


def test_choose_empty() -> None:
    assert choose(np.zeros((0, 3)), top_k=2, min_similarity=0.3, max_gap=0.1) == []


# ---------------------------------------------------------------- build_records

MIN_SIM, TOP_K, MAX_GAP = 0.3, 2, 0.2


def scenario(sid: str, dependent: bool, n_variants: int, category: str) -> Scenario:
    return Scenario(
        id=sid,
        category=category,
        triggers=(f"{sid} trigger",),
        unsafe_queries=tuple(f"{sid} unsafe question {k}?" for k in range(n_variants)),
        benign_queries=tuple(f"{sid} benign question {k}?" for k in range(n_variants)),
        risk="The image shows {subject}. Risky for " + sid + ".",
        unsafe_guidance=f"Please don't ({sid}).",
        benign_guidance=f"Here is how ({sid}).",
        image_dependent=dependent,
    )


SCENARIOS = [
    scenario("dep2", True, 2, "physical_injury"),
    scenario("ind2", False, 2, "privacy"),
    scenario("dep1", True, 1, "animal_welfare"),
]
IMAGES = [
    {
        "image_id": f"img{i}",
        "path": f"data/ingest/images/img{i}.png",
        "caption": f"photo{i}.jpg: a thing number {i}. Taken indoors.",
        "description": f"description {i}",
    }
    for i in range(5)
]
SCORES = np.array(
    [
        #  dep2  ind2  dep1
        [0.90, 0.80, 0.10],  # img0: dep2, ind2
        [0.10, 0.50, 0.45],  # img1: ind2, dep1
        [0.20, 0.10, 0.25],  # img2: nothing fits
        [0.60, 0.20, 0.20],  # img3: dep2 (ind2 below min_similarity)
        [0.05, 0.00, 0.90],  # img4: dep1
    ]
)
CHOSEN = {("img0", "dep2"), ("img0", "ind2"), ("img1", "ind2"), ("img1", "dep1")}
CHOSEN |= {("img3", "dep2"), ("img4", "dep1")}


def build(cache: RowCache, contrast: bool = True, scenarios=SCENARIOS, scores=SCORES):
    return build_records(
        IMAGES,
        scenarios,
        scores,
        TemplateGenerator("tmpl", "r1"),
        cache,
        top_k=TOP_K,
        min_similarity=MIN_SIM,
        max_gap=MAX_GAP,
        contrast_pairs=contrast,
    )


@pytest.fixture
def cache(tmp_path: Path) -> RowCache:
    c = RowCache("t", cache_dir=tmp_path)
    yield c
    c.close()


def test_unsafe_and_benign_records_per_chosen_pair(cache: RowCache) -> None:
    records, unfit = build(cache)
    assert unfit == ["img2"]
    assert records.schema == pl.Schema(RECORD_SCHEMA)
    assert records["record_id"].n_unique() == records.height

    by_id = {s.id: s for s in SCENARIOS}
    main = records.filter(pl.col("query_type") != "contrast")
    assert set(main.select("image_id", "scenario").unique().iter_rows()) == CHOSEN
    # per chosen (image, scenario): one unsafe and one benign record per query variant
    counts = Counter(main.select("image_id", "scenario", "query_type", "label").iter_rows())
    expected = Counter()
    for img, sid in CHOSEN:
        n = len(by_id[sid].unsafe_queries)
        expected[(img, sid, "unsafe", "unsafe")] = n
        expected[(img, sid, "benign", "safe")] = n
    assert counts == expected

    for r in main.iter_rows(named=True):
        s = by_id[r["scenario"]]
        i = int(r["image_id"][3:])
        assert r["category"] == s.category
        assert r["image_path"] == IMAGES[i]["path"]
        assert r["similarity"] == SCORES[i, SCENARIOS.index(s)]
        assert r["generator"] == "tmpl@r1"
        # subject = the caption's first sentence without the file prefix
        assert r["risk_analysis"] == f"The image shows a thing number {i}. Risky for {s.id}."
        if r["query_type"] == "unsafe":
            assert r["query"] in s.unsafe_queries
            assert r["guidance"] == s.unsafe_guidance
        else:
            assert r["query"] in s.benign_queries
            assert r["guidance"] == s.benign_guidance
        assert r["record_id"] == record_id(r["image_id"], s.id, r["query_type"], r["query"])

    # unsafe and benign of one variant share a pair_id; variants of a scenario pair up in order
    pairs = main.group_by("pair_id").agg(pl.col("query_type").sort(), pl.col("query").sort())
    assert pairs.height == sum(len(by_id[sid].unsafe_queries) for _, sid in CHOSEN)
    assert all(t == ["benign", "unsafe"] for t in pairs["query_type"].to_list())
    for benign_q, unsafe_q in pairs["query"].to_list():
        assert benign_q.split(" benign question ")[1] == unsafe_q.split(" unsafe question ")[1]


def test_contrast_records(cache: RowCache) -> None:
    records, _ = build(cache)
    contrast = records.filter(pl.col("query_type") == "contrast")
    assert contrast.height > 0
    # only image-dependent scenarios get contrast records
    assert set(contrast["scenario"]) == {"dep2", "dep1"}
    by_id = {s.id: s for s in SCENARIOS}
    unsafe = records.filter(pl.col("query_type") == "unsafe")
    for r in contrast.iter_rows(named=True):
        j = SCENARIOS.index(by_id[r["scenario"]])
        i = int(r["image_id"][3:])
        assert r["label"] == "safe"
        # the query is, word for word, an unsafe query of the pair it contrasts
        twin = unsafe.filter(pl.col("pair_id") == r["pair_id"])
        assert twin.height == 1
        assert r["query"] == twin["query"].item()
        # ... beside a different image that the scenario does not fit
        assert r["image_id"] != twin["image_id"].item()
        assert SCORES[i, j] < MIN_SIM
        assert r["similarity"] == SCORES[i, j]
        assert r["image_path"] == IMAGES[i]["path"]
        assert "Nothing in this image (a thing number" in r["guidance"]
        assert r["record_id"] == record_id(r["image_id"], r["scenario"], "contrast", r["query"])
    # every unsafe query of an image-dependent scenario has its contrast (repeats merge, so
    # compare the sets of (scenario, query))
    dep_unsafe = unsafe.filter(pl.col("scenario").is_in(["dep2", "dep1"]))
    assert set(contrast.select("scenario", "query").iter_rows()) == set(
        dep_unsafe.select("scenario", "query").iter_rows()
    )


def test_contrast_with_a_single_unrelated_image_is_exact(cache: RowCache) -> None:
    # one image-dependent scenario; img1 is the only image it does not fit, so every contrast
    # lands on img1, and the same query on img1 is one record however many images it contrasts
    scores = np.array([[0.9], [0.1], [0.35], [0.4], [0.45]])
    records, unfit = build(cache, scenarios=SCENARIOS[:1], scores=scores)
    assert unfit == ["img1"]
    # 4 fitting images x 2 variants = 8 unsafe + 8 benign; contrast: 2 queries on img1
    assert Counter(records["query_type"]) == {"unsafe": 8, "benign": 8, "contrast": 2}
    contrast = records.filter(pl.col("query_type") == "contrast")
    assert contrast["image_id"].to_list() == ["img1", "img1"]
    assert sorted(contrast["query"]) == sorted(SCENARIOS[0].unsafe_queries)
    assert contrast["similarity"].to_list() == [0.1, 0.1]
    assert contrast["label"].to_list() == ["safe", "safe"]


def test_no_contrast_when_every_image_fits(cache: RowCache) -> None:
    scores = np.full((5, 1), 0.9)
    records, unfit = build(cache, scenarios=SCENARIOS[:1], scores=scores)
    assert unfit == []
    assert "contrast" not in records["query_type"].to_list()
    assert records.height == 5 * 2 * 2


def test_contrast_pairs_off(cache: RowCache) -> None:
    with_c, _ = build(cache, contrast=True)
    without, unfit = build(cache, contrast=False)
    assert unfit == ["img2"]
    assert "contrast" not in without["query_type"].to_list()
    assert without.equals(with_c.filter(pl.col("query_type") != "contrast"))


def test_nothing_fits(cache: RowCache) -> None:
    records, unfit = build(cache, scores=np.zeros_like(SCORES))
    assert records.height == 0
    assert records.schema == pl.Schema(RECORD_SCHEMA)
    assert unfit == [img["image_id"] for img in IMAGES]


def test_second_call_hits_the_cache(cache: RowCache, tmp_path: Path) -> None:
    first, _ = build(cache)
    calls = len(CHOSEN)  # one generator call per chosen (image, scenario)
    assert (cache.hits, cache.misses) == (0, calls)
    again, _ = build(cache)
    assert cache.misses == calls  # unchanged
    assert cache.hits == calls
    assert again.equals(first)

    # the cache is on disk: a new handle on the same folder computes nothing
    reopened = RowCache("t2", cache_dir=tmp_path)
    third, _ = build(reopened)
    assert (reopened.hits, reopened.misses) == (calls, 0)
    assert third.equals(first)

    # editing one scenario's text recomputes only that scenario's calls
    edited = [
        SCENARIOS[0],
        dataclasses.replace(SCENARIOS[1], benign_guidance="New text."),
        SCENARIOS[2],
    ]
    fourth, _ = build(reopened, scenarios=edited)
    n_ind2 = sum(1 for _, sid in CHOSEN if sid == "ind2")
    assert reopened.misses == n_ind2
    assert set(
        fourth.filter(pl.col("query_type") == "benign", pl.col("scenario") == "ind2")["guidance"]
    ) == {"New text."}
    reopened.close()
