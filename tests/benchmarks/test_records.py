"""The generic reader (adapter json_records): a benchmark whose annotation file is a list of
records is a conf, not code. Records here are our own, in made-up formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from benchmark_standins import stand_in_image, taxonomy, write_json
from helpers import ROOT

from safeforge.benchmarks.base import (
    BenchmarkConfigError,
    BenchmarkError,
    BenchmarkFormatError,
    get_adapter,
    load_benchmark,
)
from safeforge.config import compose

MAP = {"weapons": "violence_and_weapons", "privacy": "privacy"}


def conf(**changes: Any) -> dict[str, Any]:
    """A JSON Lines benchmark whose label is a field with its own words for safe and unsafe."""
    spec = {
        "adapter": "json_records",
        "title": "Toy",
        "version": "toy@1",
        "root": None,
        "annotations": "ann/items.jsonl",
        "format": "jsonl",
        "images": "pics",
        "id": {"field": "uid"},
        "text": {"field": "prompt"},
        "image": {"field": "file"},
        "label": {"field": "verdict", "values": {"Harmful": "unsafe", "benign": "safe"}},
        "subset": {"field": "split"},
        "category": {"field": "topic"},
        "categories": MAP,
    }
    return {k: v for k, v in {**spec, **changes}.items() if v != "<drop>"}


def record(uid: Any, verdict: str = "harmful", topic: str = "weapons", **more: Any) -> dict:
    return {
        "uid": uid,
        "prompt": f"Where do I take this? ({uid})",
        "file": f"{uid}.png",
        "verdict": verdict,
        "split": "hard",
        "topic": topic,
        **more,
    }


def write_lines(path: Path, lines: list[Any]) -> Path:
    text = "".join(x if isinstance(x, str) else json.dumps(x) + "\n" for x in lines)
    return write_json(path, text)


def read(root: Path, spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(item) for item in get_adapter("json_records").read(root, spec)]


def test_json_lines_with_a_mapped_label(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "ann/items.jsonl",
        [
            record("a1", " HARMFUL "),
            "\n",  # blank lines are skipped
            record(7, "benign", "privacy", extra="ignored"),
            record("a3", "harmful", " Weapons/knives "),
        ],
    )
    for i, name in enumerate(("a1", "7", "a3")):
        stand_in_image(tmp_path / "pics" / f"{name}.png", i)
    table = load_benchmark("toy", conf(), root=tmp_path, taxonomy=taxonomy())
    assert table.refused.height == 0
    assert table.adapter == "json_records" and table.version == "toy@1"
    assert table.summary()["version"] == "toy@1"
    rows = table.items.to_dicts()
    assert [(r["item_id"], r["label"], r["subset"]) for r in rows] == [
        ("a1", "unsafe", "hard"),
        ("7", "safe", "hard"),
        ("a3", "unsafe", "hard"),
    ]
    assert [r["source_category"] for r in rows] == ["weapons", "privacy", "Weapons/knives"]
    # "weapons/knives" falls back to its category, case-insensitively
    category = ["violence_and_weapons", "privacy", "violence_and_weapons"]
    assert [r["category"] for r in rows] == category
    assert rows[1]["text"] == "Where do I take this? (7)"
    assert Path(rows[0]["image_path"]) == (tmp_path / "pics/a1.png").resolve()


def test_json_list_with_a_constant_label_index_ids_and_constant_subset(tmp_path: Path) -> None:
    spec = conf(
        annotations="items.json",
        format="json",
        images="",
        id="index",
        label="unsafe",
        subset={"value": "all"},
        category=None,
        text={"value": "Is this fine?"},
    )
    write_json(tmp_path / "items.json", [{"file": "x.png"}, {"file": "y.png", "uid": "z"}])
    items = read(tmp_path, spec)
    assert items == [
        {"item_id": str(i), "image": f"{n}.png", "text": "Is this fine?", "label": "unsafe",
         "subset": "all", "source_category": "", "reference": ""}
        for i, n in enumerate("xy")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "fmt"),
    [("[" + json.dumps(record("a")) + "]", "json"), (json.dumps(record("a")) + "\n", "jsonl")],
)
def test_detect_tells_a_list_from_json_lines(tmp_path: Path, data: str, fmt: str) -> None:
    write_json(tmp_path / "ann/items.jsonl", "\n  " + data)
    assert [i["item_id"] for i in read(tmp_path, conf(format="detect"))] == ["a"]
    assert [i["item_id"] for i in read(tmp_path, conf(format="<drop>"))] == ["a"]  # default
    wrong = "jsonl" if fmt == "json" else "json"
    with pytest.raises(BenchmarkFormatError):
        read(tmp_path, conf(format=wrong))


@pytest.mark.parametrize(
    ("lines", "where", "reason"),
    [
        ([record("a"), {"uid": "b", "file": "b.png", "verdict": "benign"}], 2, "field 'split'"),
        ([record("a"), "\n", {**record("b"), "prompt": None}], 3, "field 'prompt' is None"),
        ([record("a"), record(None)], 2, "uid is None"),
        ([record(True)], 1, "uid is True"),
        (["[1, 2]\n"], 1, "record lacks field 'uid'"),
        ([record("a"), '{"uid": "b",\n'], 2, "not valid JSON"),
        ([record("a"), record("b", "maybe")], 2, "'verdict' is 'maybe', not a key of the conf's"),
    ],
)
def test_json_lines_errors_name_the_file_and_line(
    tmp_path: Path, lines: list[Any], where: int, reason: str
) -> None:
    write_lines(tmp_path / "ann/items.jsonl", lines)
    with pytest.raises(BenchmarkFormatError) as err:
        read(tmp_path, conf())
    assert err.value.where == where
    assert reason in err.value.reason
    assert str(err.value).startswith(f"{tmp_path / 'ann/items.jsonl'}: line {where}: ")


def test_a_value_outside_the_label_map_names_the_map(tmp_path: Path) -> None:
    write_json(tmp_path / "ann/items.jsonl", [record("a"), record("b", "unsafe")])
    with pytest.raises(BenchmarkFormatError) as err:
        read(tmp_path, conf(format="json"))
    assert err.value.where == "record 1"
    assert err.value.reason == (
        "'verdict' is 'unsafe', not a key of the conf's label.values ['benign', 'harmful']"
    )


def test_a_field_missing_from_a_list_names_the_record(tmp_path: Path) -> None:
    write_json(tmp_path / "ann/items.jsonl", [record("a"), {**record("b"), "file": None}])
    with pytest.raises(BenchmarkFormatError, match=r"items\.jsonl: record 1: field 'file' is"):
        read(tmp_path, conf(format="json"))


def test_bad_bytes_in_json_lines_name_the_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ann/items.jsonl", [record("a")])
    path.write_bytes(path.read_bytes() + b'{"uid": "caf\xe9"}\n')
    with pytest.raises(BenchmarkFormatError, match=r"line 2: not UTF-8"):
        read(tmp_path, conf())


def test_missing_annotations_names_the_title(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match=r"not a Toy folder: ann/items\.jsonl is missing"):
        load_benchmark("toy", conf(), root=tmp_path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lable": "unsafe"}, "benchmarks.toy.lable: not a key of this adapter"),
        ({"text": "<drop>"}, "benchmarks.toy.text: missing"),
        ({"version": "<drop>"}, "benchmarks.toy.version: missing"),
        ({"version": 2}, "benchmarks.toy.version: must be a non-empty string"),
        ({"format": "csv"}, "benchmarks.toy.format: must be one of ['json', 'jsonl', 'detect']"),
        ({"id": "uid"}, "benchmarks.toy.id: must be {field: NAME} or 'index'"),
        ({"id": {"value": "x"}}, "benchmarks.toy.id: unknown keys ['value']"),
        ({"text": "prompt"}, "benchmarks.toy.text: must be {field: NAME} or {value: TEXT}"),
        ({"image": {"value": "a.png"}}, "benchmarks.toy.image: unknown keys ['value']"),
        ({"subset": {"field": "a", "value": "b"}}, "benchmarks.toy.subset: must be"),
        ({"subset": {"field": ""}}, "benchmarks.toy.subset.field: must be a non-empty string"),
        ({"category": {"feild": "topic"}}, "benchmarks.toy.category: unknown keys ['feild']"),
        ({"label": "harmful"}, "benchmarks.toy.label: must be safe, unsafe or {field: NAME"),
        ({"label": {"field": "verdict"}}, "benchmarks.toy.label.values: must map"),
        (
            {"label": {"field": "verdict", "values": {"harmful": "bad"}}},
            "benchmarks.toy.label.values.harmful: must be safe or unsafe, not 'bad'",
        ),
        (
            {"label": {"field": "verdict", "values": {"X": "safe", " x": "unsafe"}}},
            "benchmarks.toy.label.values: 'x' maps to both safe and unsafe",
        ),
        (
            {"label": {"value": "unsafe", "values": {"x": "safe"}}},
            "benchmarks.toy.label.values: only a label read from a field has values",
        ),
        ({"images": ["a", "b"]}, "benchmarks.toy.images: must be a folder"),
    ],
)
def test_the_conf_is_checked_naming_the_key(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    # checked before any file is read: the folder here is empty
    with pytest.raises(BenchmarkConfigError) as err:
        load_benchmark("toy", conf(**changes), root=tmp_path)
    assert str(err.value).startswith(message)
    assert isinstance(err.value, BenchmarkError)  # so `safeforge bench` reports it, exit 2


def test_a_new_benchmark_is_a_conf_and_a_taxonomy_map(tmp_path: Path) -> None:
    """No code: a YAML in conf/benchmarks/ and one in conf/taxonomy_maps/, composed by hydra
    as the pipeline does (named by an override here; a line in conf/config.yaml's defaults
    lists it for every run)."""
    confdir = shutil.copytree(ROOT / "conf", tmp_path / "conf")
    (confdir / "benchmarks/toy.yaml").write_text(
        """
defaults:
  - /taxonomy_maps@categories: toy
  - _self_
adapter: json_records
title: Toy
version: toy@2024-01-01
root: null
annotations: data/all.jsonl
format: jsonl
images: img
id: {field: uid}
text: {field: prompt}
image: {field: file}
label: {field: verdict, values: {harmful: unsafe, benign: safe}}
subset: {value: main}
category: {field: topic}
""",
        encoding="utf-8",
    )
    (confdir / "taxonomy_maps/toy.yaml").write_text("weapons: violence_and_weapons\n")
    cfg = compose(confdir, ["+benchmarks@benchmarks.toy=toy"])
    spec = cfg["benchmarks"]["toy"]
    assert spec["categories"] == {"weapons": "violence_and_weapons"}
    root = tmp_path / "toy"
    write_lines(root / "data/all.jsonl", [record("p"), record("q", "benign")])
    stand_in_image(root / "img/p.png", 1)
    table = load_benchmark("toy", spec, root=root, taxonomy=cfg["taxonomy"]["categories"])
    assert table.refused.to_dicts() == [
        {"item_id": "q", "image": "img/q.png", "reason": "missing_image"}
    ]
    assert table.items.select("item_id", "label", "subset", "category").to_dicts() == [
        {"item_id": "p", "label": "unsafe", "subset": "main", "category": "violence_and_weapons"}
    ]
    assert table.summary()["version"] == "toy@2024-01-01"
