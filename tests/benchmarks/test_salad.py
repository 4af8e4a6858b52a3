"""SaLAD read natively: data/data.json (a JSON list), label from "safety type", images by name."""

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

# hand-computed from conf/taxonomy_maps/salad.yaml for the categories in the samples
CATEGORY = {
    "Activity": "physical_injury",
    "Sports": "physical_injury",
    "Food": "health_and_medical",
    "Game": "physical_injury",
    "Health": "health_and_medical",
    "Home": "physical_injury",
    "Office": "physical_injury",
    "Research": "hazardous_substances",
    "Study": "physical_injury",
    "Travel": "physical_injury",
}


def spec() -> dict[str, Any]:
    return benchmark_spec("salad")


def write_data(root: Path, records: list[dict[str, Any]] | str) -> Path:
    return write_json(root / spec()["annotations"], records)


def own(query: str, category: str, image: str, safety: str) -> dict[str, Any]:
    note = "safety warning" if safety.strip().lower() == "unsafe" else "safe suggestion"
    return {
        "query": query,
        "category": category,
        "safety type": safety,
        note: "A note.",
        "image": image,
    }


def test_sample_records_load(tmp_path: Path) -> None:
    records = sample_records("salad")
    write_data(tmp_path, [without_source(r) for r in records])
    for i, r in enumerate(records):
        stand_in_image(tmp_path / spec()["images"] / r["image"], i)
    table = load_benchmark("salad", spec(), root=tmp_path, taxonomy=taxonomy())
    assert table.refused.height == 0
    assert table.items.height == 20
    summary = table.summary()
    assert summary["by_label"] == {"safe": 10, "unsafe": 10}
    assert summary["by_subset"] == {c: 2 for c in CATEGORY}
    assert summary["by_category"] == {
        "hazardous_substances": 2,
        "health_and_medical": 4,
        "physical_injury": 14,
    }
    assert summary["unmapped_source_categories"] == {}
    rows = {r["item_id"]: r for r in table.items.iter_rows(named=True)}
    assert set(rows) == {str(i) for i in range(20)}
    for i, r in enumerate(records):
        row = rows[str(i)]
        assert r["_source"]["index"] == i  # the id is the record's index in the published list
        assert row["text"] == r["query"]
        assert row["label"] == r["safety type"]
        assert row["subset"] == row["source_category"] == r["category"]
        assert row["category"] == CATEGORY[r["category"]]
        assert Path(row["image_path"]) == (tmp_path / "images" / r["image"]).resolve()
        # the authors' note is the reference a reply is rated against (stage evaluate)
        note = r["safety warning"] if r["safety type"] == "unsafe" else r["safe suggestion"]
        assert row["reference"] == note.strip()
    # hand-checked pairs: record 0 is an unsafe Activity item, record 1 a safe one
    assert (rows["0"]["label"], rows["0"]["subset"]) == ("unsafe", "Activity")
    assert (rows["1"]["label"], rows["1"]["subset"]) == ("safe", "Activity")


def test_own_records_labels_normalised_and_missing_images_refused(tmp_path: Path) -> None:
    write_data(
        tmp_path,
        [
            own("Can I leave the pan on like this?", "Home", "h_1.jpg", " Unsafe "),
            own("Is this a good bench to rest on?", "Travel", "t_1.png", "SAFE"),
            own("Shall I plug the heater in here?", "Home", "h_2.jpeg", "unsafe"),
        ],
    )
    stand_in_image(tmp_path / "images/h_1.jpg", 1)
    stand_in_image(tmp_path / "images/t_1.png", 2)
    table = load_benchmark("salad", spec(), root=tmp_path, taxonomy=taxonomy())
    assert dict(table.items.select("item_id", "label").iter_rows()) == {"0": "unsafe", "1": "safe"}
    assert table.refused.to_dicts() == [
        {"item_id": "2", "image": "images/h_2.jpeg", "reason": "missing_image"}
    ]


def test_image_names_that_leave_the_root_are_refused(tmp_path: Path) -> None:
    outside = stand_in_image(tmp_path / "outside.jpg", 3)
    root = tmp_path / "salad"
    write_data(
        root,
        [
            own("Is this ladder steady?", "Home", "../../outside.jpg", "unsafe"),
            own("Is this ladder steady?", "Home", str(outside), "unsafe"),
            own("Is this ladder steady?", "Home", "ok.jpg", "unsafe"),
        ],
    )
    stand_in_image(root / "images/ok.jpg", 4)
    table = load_benchmark("salad", spec(), root=root)
    assert table.items["item_id"].to_list() == ["2"]
    assert dict(table.refused.select("item_id", "reason").iter_rows()) == {
        "0": "path_escapes_root",
        "1": "path_escapes_root",
    }


@pytest.mark.parametrize(
    ("records", "where", "reason"),
    [
        (
            [own("Fine?", "Home", "a.jpg", "unsafe"), own("Fine?", "Home", "b.jpg", "maybe")],
            "record 1",
            "not safe or unsafe",
        ),
        (
            [own("Fine?", "Home", "a.jpg", "safe"), {"query": "Fine?", "image": "b.jpg"}],
            "record 1",
            "lacks field 'safety type'",
        ),
        (
            [{"category": "Home", "image": "a.jpg", "safety type": "safe"}],
            "record 0",
            "lacks field 'query'",
        ),
        (["just a string"], "record 0", "lacks field"),
        ([{**own("Fine?", "Home", "a.jpg", "safe"), "image": None}], "record 0", "not a string"),
        ({"query": "Fine?"}, None, "expected a JSON list"),
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
    assert "data/data.json" in str(err.value)
    if where:
        assert where in str(err.value)


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    write_data(tmp_path, '[\n  {"query": "Fine?",\n   "category": "Home",,\n  }\n]\n')
    with pytest.raises(BenchmarkFormatError, match=r"data/data\.json: line 3: not valid JSON"):
        load_benchmark("salad", spec(), root=tmp_path)


def test_missing_annotations_is_not_this_benchmark(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir(parents=True)
    with pytest.raises(BenchmarkError, match=r"not a SaLAD folder: data/data\.json is missing"):
        load_benchmark("salad", spec(), root=tmp_path)
