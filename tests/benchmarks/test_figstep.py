"""FigStep SafeBench read natively: data/question/safebench.csv, one typographic image per row,
the fixed incitement prompt as text (the instruction is only in the image)."""

from __future__ import annotations

import csv
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
    get_adapter,
    load_benchmark,
)

COLUMNS = ["dataset", "category_id", "task_id", "category_name", "question", "instruction"]

# hand-computed from conf/taxonomy_maps/figstep.yaml
CATEGORY = {
    "Illegal Activity": "illegal_activity",
    "Hate Speech": "hate_and_harassment",
    "Malware Generation": "cybercrime",
    "Physical Harm": "violence_and_weapons",
    "Fraud": "illegal_activity",
    "Adult Content": "sexual_content",
    "Privacy Violation": "privacy",
    "Legal Opinion": "specialized_advice",
    "Financial Advice": "specialized_advice",
    "Health Consultation": "health_and_medical",
}


def spec() -> dict[str, Any]:
    return benchmark_spec("figstep")


def write_csv(root: Path, rows: list[dict[str, Any]], relative: str | None = None) -> Path:
    path = root / (relative or spec()["questions"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def own(category_id: int, task_id: int, category_name: str = "Fraud") -> dict[str, Any]:
    return {
        "dataset": "ForbidQI",
        "category_id": category_id,
        "task_id": task_id,
        "category_name": category_name,
        "question": f"Own test question {category_id}-{task_id}, with a comma?",
        "instruction": f"Own test steps {category_id}-{task_id}.",
    }


def test_sample_rows_load(tmp_path: Path) -> None:
    records = [without_source(r) for r in sample_records("figstep_safebench")]
    write_csv(tmp_path, records)
    for i, r in enumerate(records):
        name = f"query_{r['dataset']}_{r['category_id']}_{r['task_id']}_6.png"
        stand_in_image(tmp_path / "data/images/SafeBench" / name, i)
    table = load_benchmark("figstep", spec(), root=tmp_path, taxonomy=taxonomy())
    assert table.refused.height == 0
    assert table.items.height == 10
    rows = {r["item_id"]: r for r in table.items.iter_rows(named=True)}
    assert set(rows) == {f"{k}_1" for k in range(1, 11)}  # the first task of each topic
    assert (
        Path(rows["1_1"]["image_path"])
        == (tmp_path / "data/images/SafeBench/query_ForbidQI_1_1_6.png").resolve()
    )
    assert Path(rows["10_1"]["image_path"]).name == "query_ForbidQI_10_1_6.png"
    prompt = spec()["text_prompt"]
    assert prompt.startswith("The image shows a list numbered 1, 2, and 3")
    for r in records:
        row = rows[f"{r['category_id']}_{r['task_id']}"]
        assert row["text"] == prompt
        # the harmful request is only in the image
        assert r["question"] not in row["text"] and r["instruction"] not in row["text"]
        assert row["subset"] == row["source_category"] == r["category_name"]
        assert row["category"] == CATEGORY[r["category_name"]]
    summary = table.summary()
    assert summary["by_label"] == {"unsafe": 10}
    assert summary["by_subset"] == {c: 1 for c in CATEGORY}
    assert summary["by_category"] == {
        "cybercrime": 1,
        "hate_and_harassment": 1,
        "health_and_medical": 1,
        "illegal_activity": 2,
        "privacy": 1,
        "sexual_content": 1,
        "specialized_advice": 2,
        "violence_and_weapons": 1,
    }
    assert summary["unmapped_source_categories"] == {}


def test_missing_images_refused_and_the_rest_load(tmp_path: Path) -> None:
    write_csv(tmp_path, [own(5, 1), own(5, 2), own(7, 3, "Privacy Violation")])
    stand_in_image(tmp_path / "data/images/SafeBench/query_ForbidQI_5_1_6.png", 1)
    stand_in_image(tmp_path / "data/images/SafeBench/query_ForbidQI_7_3_6.png", 2)
    table = load_benchmark("figstep", spec(), root=tmp_path, taxonomy=taxonomy())
    assert table.items["item_id"].to_list() == ["5_1", "7_3"]
    assert table.refused.to_dicts() == [
        {
            "item_id": "5_2",
            "image": "data/images/SafeBench/query_ForbidQI_5_2_6.png",
            "reason": "missing_image",
        }
    ]
    assert dict(table.items.select("item_id", "category").iter_rows()) == {
        "5_1": "illegal_activity",
        "7_3": "privacy",
    }


def test_safebench_tiny_by_conf(tmp_path: Path) -> None:
    write_csv(tmp_path, [own(3, 4, "Malware Generation")], "data/question/SafeBench-Tiny.csv")
    stand_in_image(tmp_path / "data/images/SafeBench-Tiny/query_ForbidQI_3_4_6.png", 3)
    tiny = {
        **spec(),
        "questions": "data/question/SafeBench-Tiny.csv",
        "images": "data/images/SafeBench-Tiny",
    }
    table = load_benchmark("figstep", tiny, root=tmp_path, taxonomy=taxonomy())
    assert table.items.select("item_id", "category").rows() == [("3_4", "cybercrime")]


def test_ragged_row_names_file_and_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [own(1, 1), own(1, 2)])
    path.write_text(path.read_text() + "ForbidQI,1,3,Fraud,only five fields\n")
    with pytest.raises(BenchmarkFormatError) as err:
        list(get_adapter("figstep").read(tmp_path, spec()))
    assert err.value.where == 4
    assert "data/question/safebench.csv: line 4: wrong number of fields" in str(err.value)


def test_missing_column_names_the_header_line(tmp_path: Path) -> None:
    path = tmp_path / spec()["questions"]
    path.parent.mkdir(parents=True)
    path.write_text(
        "dataset,category_id,category_name,question,instruction\nForbidQI,1,Fraud,q,i\n"
    )
    with pytest.raises(
        BenchmarkFormatError, match=r"safebench\.csv: line 1: header lacks .*task_id"
    ):
        load_benchmark("figstep", spec(), root=tmp_path)


def test_empty_ids_name_the_line(tmp_path: Path) -> None:
    write_csv(tmp_path, [own(1, 1), {**own(1, 2), "task_id": ""}])
    with pytest.raises(BenchmarkFormatError, match=r"safebench\.csv: line 3: empty"):
        load_benchmark("figstep", spec(), root=tmp_path)


def test_missing_questions_is_not_this_benchmark(tmp_path: Path) -> None:
    (tmp_path / "data/images/SafeBench").mkdir(parents=True)
    with pytest.raises(BenchmarkError, match=r"not a FigStep SafeBench folder: data/question"):
        load_benchmark("figstep", spec(), root=tmp_path)
