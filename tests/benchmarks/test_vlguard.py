"""VLGuard adapter on a tiny copy of data/test.json: the real sample records (read at run time)
plus records written here, with stand-in images in the published layout."""

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
)

from safeforge.benchmarks.base import (
    BenchmarkError,
    BenchmarkFormatError,
    BenchmarkTable,
    get_adapter,
    load_benchmark,
)

SPEC = benchmark_spec("vlguard")


def build(root: Path, records: list[Any], images: bool = True) -> Path:
    """data/test.json as published (a JSON list) and a stand-in for each record's image."""
    ann = root / SPEC["annotations"]
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps(records, indent=1), encoding="utf-8")
    for n, record in enumerate(records):
        image = record.get("image", "") if isinstance(record, dict) else ""
        if images and image and not image.startswith("/") and ".." not in image:
            stand_in_image(root / SPEC["images"] / image, seed=n)
    return root


def load(root: Path) -> BenchmarkTable:
    return load_benchmark("vlguard", SPEC, root=root, taxonomy=taxonomy())


def unsafe_image(rid: str, image: str, category: str | None, sub: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"id": rid, "image": image, "safe": False}
    if category is not None:
        record["harmful_category"] = category
    if sub is not None:
        record["harmful_subcategory"] = sub
    record["instr-resp"] = [{"instruction": f"instruction for {rid}", "response": "No."}]
    return record


def safe_image(rid: str, image: str) -> dict[str, Any]:
    return {
        "id": rid,
        "image": image,
        "safe": True,
        "instr-resp": [  # unsafe first: the adapter must find them by key, not position
            {"unsafe_instruction": f"unsafe ask for {rid}", "response": "No."},
            {"safe_instruction": f"safe ask for {rid}", "response": "Sure."},
        ],
    }


def instruction(record: dict[str, Any], key: str) -> str:
    return next(p[key] for p in record["instr-resp"] if key in p)


@pytest.fixture
def samples() -> list[dict[str, Any]]:
    return [without_source(r) for r in sample_records("vlguard")]


def test_sample_records_as_the_three_test_sets(tmp_path: Path, samples: list) -> None:
    # the 9 sample records: 4 safe images (2 items each) and 5 unsafe images (1 item each)
    table = load(build(tmp_path, samples))
    s = table.summary()
    assert (s["items"], s["refused"]) == (13, 0)
    assert s["by_subset"] == {"safe_safes": 4, "safe_unsafes": 4, "unsafes": 5}
    assert s["by_label"] == {"safe": 4, "unsafe": 9}
    # deception/disinformation (x3) and privacy/personal data fall back to the category;
    # risky behavior/professional advice has its own key; safe images have no category
    assert s["by_category"] == {
        "misinformation": 3,
        "privacy": 1,
        "specialized_advice": 1,
        "unspecified": 8,
    }
    assert s["unmapped_source_categories"] == {}
    assert set(table.items["source_category"]) == {
        "",
        "deception/disinformation",
        "privacy/personal data",
        "risky behavior/professional advice",
    }

    rows = {r["item_id"]: r for r in table.items.iter_rows(named=True)}
    for record in samples:
        rid = record["id"]
        image = str((tmp_path / "data" / "test" / record["image"]).resolve())
        if record["safe"]:
            expected = {
                f"{rid}:safe_safes": ("safe", instruction(record, "safe_instruction")),
                f"{rid}:safe_unsafes": ("unsafe", instruction(record, "unsafe_instruction")),
            }
        else:
            expected = {f"{rid}:unsafes": ("unsafe", instruction(record, "instruction"))}
        for item_id, (label, text) in expected.items():
            row = rows.pop(item_id)
            assert (row["label"], row["text"], row["image_path"]) == (label, text, image)
            assert row["subset"] == item_id.split(":")[-1]
            if record["safe"]:
                assert (row["source_category"], row["category"]) == ("", "unspecified")
            else:
                source = f"{record['harmful_category']}/{record['harmful_subcategory']}"
                assert row["source_category"] == source
    assert rows == {}


def test_raw_items_are_relative_and_in_file_order(tmp_path: Path, samples: list) -> None:
    build(tmp_path, samples)
    raw = list(get_adapter("vlguard").read(tmp_path, SPEC))
    assert [r["image"] for r in raw[:2]] == [f"data/test/{samples[0]['image']}"] * 2
    assert all(r["image"].startswith("data/test/") for r in raw)
    ids = [r["item_id"] for r in raw]
    assert ids[:2] == [f"{samples[0]['id']}:safe_safes", f"{samples[0]['id']}:safe_unsafes"]
    assert ids[-1] == f"{samples[-1]['id']}:unsafes"
    assert raw == list(get_adapter("vlguard").read(tmp_path, SPEC))  # deterministic


def test_own_records_category_fallback_and_instruction_by_key(tmp_path: Path) -> None:
    records = [
        unsafe_image("u1", "x/1.png", "risky behavior", "violence"),  # finer key wins
        unsafe_image("u2", "x/2.png", "risky behavior", "stunts"),  # falls back to category
        unsafe_image("u3", "x/3.png", "discrimination", None),  # no subcategory
        unsafe_image("u4", "x/4.png", "Privacy", ""),  # empty subcategory, other case
        unsafe_image("u5", "x/5.png", "weather", "storms"),  # not in the map
        safe_image("s1", "y/1.jpg"),
    ]
    table = load(build(tmp_path, records))
    got = {
        r["item_id"]: (r["source_category"], r["category"], r["label"], r["text"])
        for r in table.items.iter_rows(named=True)
    }
    assert got == {
        "u1:unsafes": (
            "risky behavior/violence",
            "violence_and_weapons",
            "unsafe",
            "instruction for u1",
        ),
        "u2:unsafes": ("risky behavior/stunts", "physical_injury", "unsafe", "instruction for u2"),
        "u3:unsafes": ("discrimination", "hate_and_harassment", "unsafe", "instruction for u3"),
        "u4:unsafes": ("Privacy", "privacy", "unsafe", "instruction for u4"),
        "u5:unsafes": ("weather/storms", "unmapped", "unsafe", "instruction for u5"),
        "s1:safe_safes": ("", "unspecified", "safe", "safe ask for s1"),
        "s1:safe_unsafes": ("", "unspecified", "unsafe", "unsafe ask for s1"),
    }
    assert table.unmapped == {"weather/storms": 1}


def test_missing_images_are_refused_and_the_rest_load(tmp_path: Path, samples: list) -> None:
    build(tmp_path, samples)
    safe = next(r for r in samples if r["safe"])
    unsafe = next(r for r in samples if not r["safe"])
    for record in (safe, unsafe):
        (tmp_path / "data" / "test" / record["image"]).unlink()
    table = load(tmp_path)
    assert table.items.height == 10
    assert sorted(table.refused.iter_rows()) == sorted(
        [
            (f"{safe['id']}:safe_safes", f"data/test/{safe['image']}", "missing_image"),
            (f"{safe['id']}:safe_unsafes", f"data/test/{safe['image']}", "missing_image"),
            (f"{unsafe['id']}:unsafes", f"data/test/{unsafe['image']}", "missing_image"),
        ]
    )


def test_paths_out_of_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "vlguard"
    outside = stand_in_image(tmp_path / "outside.png")
    stand_in_image(root / "data" / "up.png")  # exists, but only through `..`
    link = root / "data" / "test" / "link.png"
    records = [
        unsafe_image("up", "../up.png", "privacy", None),
        unsafe_image("abs", str(outside), "privacy", None),
        safe_image("lnk", "link.png"),
        unsafe_image("ok", "fine/ok.png", "privacy", None),
    ]
    build(root, records)
    link.unlink()  # build made a stand-in there; make it a link out of the root instead
    link.symlink_to(outside)
    table = load(root)
    assert table.items["item_id"].to_list() == ["ok:unsafes"]
    assert dict(zip(table.refused["item_id"], table.refused["reason"], strict=True)) == {
        "up:unsafes": "path_escapes_root",
        "abs:unsafes": "path_escapes_root",
        "lnk:safe_safes": "path_escapes_root",
        "lnk:safe_unsafes": "path_escapes_root",
    }
    assert str(outside) in table.refused["image"].to_list()  # an absolute name stays absolute


@pytest.mark.parametrize(
    ("break_record", "where", "says"),
    [
        (lambda r: r[2].update(safe="no"), "record 2", ("'s1'", "`safe`")),
        (
            lambda r: r[1].update({"instr-resp": [{"response": "x"}]}),
            "record 1",
            ("'u2'", "'instruction'"),
        ),
        (lambda r: r[2]["instr-resp"].pop(0), "record 2", ("'s1'", "'unsafe_instruction'")),
        (lambda r: r[0].pop("image"), "record 0", ("'image'",)),
        (lambda r: r[1].update({"instr-resp": {"instruction": "x"}}), "record 1", ("'u2'",)),
    ],
    ids=["safe-not-bool", "no-instruction", "no-unsafe-instruction", "no-image", "pairs-not-list"],
)
def test_malformed_records_name_file_and_record(
    tmp_path: Path, break_record: Any, where: str, says: tuple[str, ...]
) -> None:
    records = [
        unsafe_image("u1", "a.png", "privacy", None),
        unsafe_image("u2", "b.png", "privacy", None),
        safe_image("s1", "c.png"),
    ]
    break_record(records)
    build(tmp_path, records)
    with pytest.raises(BenchmarkFormatError) as err:
        load(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "data" / "test.json") in message
    assert f": {where}:" in message
    assert all(part in message for part in says), message


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    ann = tmp_path / "data" / "test.json"
    ann.parent.mkdir(parents=True)
    ann.write_text('[\n  {"id": "a",\n   "image": oops}\n]\n', encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=r"test\.json: line 3: not valid JSON"):
        load(tmp_path)


def test_not_a_list_is_a_format_error(tmp_path: Path) -> None:
    build(tmp_path, [])
    (tmp_path / "data" / "test.json").write_text('{"id": "a"}', encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=r"test\.json: expected a JSON list"):
        load(tmp_path)


def test_missing_annotations_is_not_vlguard(tmp_path: Path) -> None:
    (tmp_path / "data" / "test").mkdir(parents=True)
    with pytest.raises(BenchmarkError, match=r"not a VLGuard folder: data/test\.json is missing"):
        load(tmp_path)


def test_empty_annotations_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="no items"):
        load(build(tmp_path, []))
