"""SIUO read natively: data/siuo_gen.json (a JSON list), every item unsafe, images by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from benchmark_standins import (
    benchmark_spec,
    sample_records,
    stand_in_image,
    taxonomy,
    without_source,
    write_json,
)

from safeforge.benchmarks.base import (
    BenchmarkError,
    BenchmarkFormatError,
    get_adapter,
    load_benchmark,
)

# hand-computed from conf/taxonomy_maps/siuo.yaml
CATEGORY = {
    "self-harm": "self_harm",
    "dangerous behavior": "physical_injury",
    "morality": "controversial_topics",
    "illegal activities & crime": "illegal_activity",
    "controversial topics, politics": "controversial_topics",
    "discrimination & stereotyping": "hate_and_harassment",
    "religion beliefs": "controversial_topics",
    "information misinterpretation": "misinformation",
    "privacy violation": "privacy",
}


def spec() -> dict[str, Any]:
    return benchmark_spec("siuo")


def write_data(root: Path, records: list[dict[str, Any]] | str) -> Path:
    return write_json(root / spec()["annotations"], records)


def own(question_id: int, image: str, category: str = "dangerous behavior") -> dict[str, Any]:
    return {
        "question_id": question_id,
        "image": image,
        "question": f"What should I do next here ({question_id})?",
        "category": category,
        "safety_warning": "A warning.",
        "reference_answer": "An answer.",
    }


def test_sample_records_load(tmp_path: Path) -> None:
    records = sample_records("siuo")
    write_data(tmp_path, [without_source(r) for r in records])
    for i, r in enumerate(records):
        stand_in_image(tmp_path / "data/images" / r["image"], i)
    table = load_benchmark("siuo", spec(), root=tmp_path, taxonomy=taxonomy())
    assert table.refused.height == 0
    assert table.items.height == 9
    summary = table.summary()
    assert summary["by_label"] == {"unsafe": 9}
    assert summary["by_subset"] == {c: 1 for c in CATEGORY}
    assert summary["by_category"] == {
        "controversial_topics": 3,
        "hate_and_harassment": 1,
        "illegal_activity": 1,
        "misinformation": 1,
        "physical_injury": 1,
        "privacy": 1,
        "self_harm": 1,
    }
    assert summary["unmapped_source_categories"] == {}
    rows = {r["item_id"]: r for r in table.items.iter_rows(named=True)}
    assert set(rows) == {f"{k}001" for k in range(1, 10)}  # one question per category
    for r in records:
        row = rows[str(r["question_id"])]
        assert row["text"] == r["question"]
        assert row["subset"] == row["source_category"] == r["category"]
        assert row["category"] == CATEGORY[r["category"]]
        assert Path(row["image_path"]) == (tmp_path / "data/images" / r["image"]).resolve()
    assert Path(rows["1001"]["image_path"]).name == "S-01.png"
    assert rows["1001"]["category"] == "self_harm"


def test_label_comes_from_the_conf(tmp_path: Path) -> None:
    write_data(tmp_path, [own(1, "a.png")])
    items = list(get_adapter(spec()["adapter"]).read(tmp_path, {**spec(), "label": "safe"}))
    assert [i["label"] for i in items] == ["safe"]
    assert items[0]["image"] == "data/images/a.png"


def test_missing_escaping_and_linked_images_are_refused_and_the_rest_load(tmp_path: Path) -> None:
    outside = stand_in_image(tmp_path / "outside" / "x.png", 1)
    root = tmp_path / "siuo"
    write_data(
        root,
        [
            own(11, "D-11.png"),
            own(12, "D-12.png"),  # no file
            own(13, "../../../outside/x.png"),
            own(14, str(outside)),
            own(15, "D-15.png"),  # a link out of the root
        ],
    )
    stand_in_image(root / "data/images/D-11.png", 2)
    (root / "data/images/D-15.png").symlink_to(outside)
    table = load_benchmark("siuo", spec(), root=root, taxonomy=taxonomy())
    assert table.items["item_id"].to_list() == ["11"]
    assert dict(table.refused.select("item_id", "reason").iter_rows()) == {
        "12": "missing_image",
        "13": "path_escapes_root",
        "14": "path_escapes_root",
        "15": "path_escapes_root",
    }
    assert table.refused.filter(item_id="12")["image"].item() == "data/images/D-12.png"


@pytest.mark.parametrize(
    ("records", "where", "reason"),
    [
        (
            [own(1, "a.png"), {"image": "b.png", "question": "Q?", "category": "x"}],
            "record 1",
            "'question_id'",
        ),
        ([{"question_id": 1, "image": "a.png", "category": "morality"}], "record 0", "'question'"),
        (
            [own(1, "a.png"), own(2, "b.png"), {**own(3, "c.png"), "question": None}],
            "record 2",
            "not a string",
        ),
        (
            [own(1, "a.png"), {**own(2, "b.png"), "question_id": None}],
            "record 1",
            "question_id is None",
        ),
        ({"questions": []}, None, "expected a JSON list"),
    ],
)
def test_malformed_records_name_file_and_record(
    tmp_path: Path, records: Any, where: str | None, reason: str
) -> None:
    write_data(tmp_path, json.dumps(records))
    with pytest.raises(BenchmarkFormatError) as err:
        list(get_adapter(spec()["adapter"]).read(tmp_path, spec()))
    assert err.value.where == where
    assert reason in err.value.reason
    assert "data/siuo_gen.json" in str(err.value)
    if where:
        assert where in str(err.value)


def test_repeated_question_id_is_an_error(tmp_path: Path) -> None:
    write_data(tmp_path, [own(7, "a.png"), own(7, "b.png")])
    with pytest.raises(BenchmarkError, match="item id '7' repeats"):
        load_benchmark("siuo", spec(), root=tmp_path)


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    write_data(tmp_path, '[\n  {"question_id": 1}\n  {"question_id": 2}\n]\n')
    with pytest.raises(BenchmarkFormatError, match=r"siuo_gen\.json: line 3: not valid JSON"):
        load_benchmark("siuo", spec(), root=tmp_path)


def test_missing_annotations_is_not_this_benchmark(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match=r"not a SIUO folder: data/siuo_gen\.json is missing"):
        load_benchmark("siuo", spec(), root=tmp_path)
