"""MM-SafetyBench adapter on processed_questions files written here in the published format (no
real records are available), with stand-in images under data/imgs/<scenario>/<type>/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from benchmark_standins import benchmark_spec, stand_in_image, taxonomy

from safeforge.benchmarks.base import (
    BenchmarkError,
    BenchmarkFormatError,
    BenchmarkTable,
    get_adapter,
    load_benchmark,
)

SPEC = benchmark_spec("mmsafetybench")
TYPES = ("SD", "SD_TYPO", "TYPO")
ILLEGAL, HEALTH = "01-Illegal_Activitiy", "12-Health_Consultation"


def question(n: int) -> dict[str, str]:
    return {
        "Question": f"question {n}",
        "Key Phrase": f"phrase {n}",
        "Phrase Type": "activity",
        "Rephrased Question": f"The bottom of the image shows phrase {n}. Explain it. ({n})",
        "Rephrased Question(SD)": f"The image shows an activity. Explain it. ({n})",
    }


def scenarios() -> dict[str, dict[str, Any]]:
    # keys out of order on purpose: "10" must come after "2"
    return {
        ILLEGAL: {"10": question(10), "0": question(0), "2": question(2), "1": question(1)},
        HEALTH: {"0": question(100)},
    }


def build(root: Path, files: dict[str, Any], images: bool = True) -> Path:
    folder = root / "data" / "processed_questions"
    folder.mkdir(parents=True, exist_ok=True)
    for n, (scenario, questions) in enumerate(files.items()):
        (folder / f"{scenario}.json").write_text(json.dumps(questions, indent=4), "utf-8")
        for key in questions if images and isinstance(questions, dict) else ():
            for t in TYPES:
                stand_in_image(root / "data" / "imgs" / scenario / t / f"{key}.jpg", seed=n)
    return root


def load(root: Path) -> BenchmarkTable:
    return load_benchmark("mmsafetybench", SPEC, root=root, taxonomy=taxonomy())


def test_one_item_per_question_and_image_type(tmp_path: Path) -> None:
    table = load(build(tmp_path, scenarios()))
    s = table.summary()
    assert (s["items"], s["refused"]) == (15, 0)  # 5 questions x 3 image types
    assert s["by_label"] == {"unsafe": 15}
    assert s["by_subset"] == {"SD": 5, "SD_TYPO": 5, "TYPO": 5}
    assert s["by_category"] == {"health_and_medical": 3, "illegal_activity": 12}
    assert s["unmapped_source_categories"] == {}
    # files by name, keys by number, types by name
    assert table.items["item_id"].to_list() == [
        f"{scenario}:{key}:{t}"
        for scenario, keys in ((ILLEGAL, ["0", "1", "2", "10"]), (HEALTH, ["0"]))
        for key in keys
        for t in TYPES
    ]
    rows = {r["item_id"]: r for r in table.items.iter_rows(named=True)}
    sd, typo = rows[f"{ILLEGAL}:10:SD"], rows[f"{ILLEGAL}:10:TYPO"]
    assert sd["text"] == "The image shows an activity. Explain it. (10)"  # Rephrased Question(SD)
    assert typo["text"] == "The bottom of the image shows phrase 10. Explain it. (10)"
    assert rows[f"{ILLEGAL}:10:SD_TYPO"]["text"] == typo["text"]
    assert rows[f"{HEALTH}:0:SD"]["text"] == "The image shows an activity. Explain it. (100)"
    assert sd["image_path"] == str((tmp_path / f"data/imgs/{ILLEGAL}/SD/10.jpg").resolve())
    assert (sd["subset"], sd["source_category"], sd["category"]) == (
        "SD",
        ILLEGAL,
        "illegal_activity",
    )
    assert rows[f"{HEALTH}:0:TYPO"]["source_category"] == HEALTH


def test_raw_items_are_relative_to_the_root(tmp_path: Path) -> None:
    raw = list(get_adapter("mmsafetybench").read(build(tmp_path, scenarios()), SPEC))
    assert raw[0] == {
        "item_id": f"{ILLEGAL}:0:SD",
        "image": f"data/imgs/{ILLEGAL}/SD/0.jpg",
        "text": "The image shows an activity. Explain it. (0)",
        "label": "unsafe",
        "subset": "SD",
        "source_category": ILLEGAL,
    }
    assert raw[-1]["image"] == f"data/imgs/{HEALTH}/TYPO/0.jpg"


def test_unlisted_scenario_is_unmapped(tmp_path: Path) -> None:
    table = load(build(tmp_path, {"14-Made_Up": {"0": question(0)}}))
    assert set(table.items["category"]) == {"unmapped"}
    assert table.unmapped == {"14-Made_Up": 3}


def test_missing_images_are_refused_and_the_rest_load(tmp_path: Path) -> None:
    build(tmp_path, scenarios())
    (tmp_path / f"data/imgs/{ILLEGAL}/TYPO/2.jpg").unlink()
    for image in (tmp_path / f"data/imgs/{HEALTH}/SD_TYPO").iterdir():
        image.unlink()
    table = load(tmp_path)
    assert table.items.height == 13
    assert sorted(table.refused.iter_rows()) == [
        (f"{ILLEGAL}:2:TYPO", f"data/imgs/{ILLEGAL}/TYPO/2.jpg", "missing_image"),
        (f"{HEALTH}:0:SD_TYPO", f"data/imgs/{HEALTH}/SD_TYPO/0.jpg", "missing_image"),
    ]


def test_paths_out_of_the_root_are_refused(tmp_path: Path) -> None:
    root = build(tmp_path / "mmsb", scenarios())
    stand_in_image(root / "data" / "up.jpg")  # exists, but only through `..`
    questions = {**scenarios()[HEALTH], "../../../up": question(7)}  # the key is in the path
    (root / f"data/processed_questions/{HEALTH}.json").write_text(json.dumps(questions))
    outside = tmp_path / "elsewhere"
    stand_in_image(outside / "1.jpg")
    sd = root / f"data/imgs/{ILLEGAL}/SD"
    for image in sd.iterdir():
        image.unlink()
    sd.rmdir()
    sd.symlink_to(outside, target_is_directory=True)  # a folder link out of the root
    table = load(root)
    refused = {r["item_id"]: r["reason"] for r in table.refused.iter_rows(named=True)}
    assert refused == {
        f"{ILLEGAL}:0:SD": "missing_image",  # not in the linked folder
        f"{ILLEGAL}:1:SD": "path_escapes_root",
        f"{ILLEGAL}:2:SD": "missing_image",
        f"{ILLEGAL}:10:SD": "missing_image",
        f"{HEALTH}:../../../up:SD": "path_escapes_root",
        f"{HEALTH}:../../../up:SD_TYPO": "path_escapes_root",
        f"{HEALTH}:../../../up:TYPO": "path_escapes_root",
    }
    assert table.items.height == 15 - 4


@pytest.mark.parametrize(
    ("break_file", "says"),
    [
        (lambda q: q["2"].pop("Rephrased Question(SD)"), "key '2': record lacks field 'Rephrased Question(SD)'"),
        (lambda q: q["1"].pop("Rephrased Question"), "key '1': record lacks field 'Rephrased Question'"),
        (lambda q: q["10"].update({"Rephrased Question": None}), "key '10': field 'Rephrased Question' is None, not a string"),
        (lambda q: q.__setitem__("0", "just text"), "key '0': record lacks field 'Rephrased Question(SD)'"),
    ],
    ids=["no-sd-question", "no-question", "null-question", "value-not-object"],
)  # fmt: skip
def test_malformed_questions_name_file_and_key(tmp_path: Path, break_file: Any, says: str) -> None:
    files = scenarios()
    break_file(files[ILLEGAL])
    build(tmp_path, files, images=False)
    with pytest.raises(BenchmarkFormatError) as err:
        load(tmp_path)
    path = tmp_path / "data" / "processed_questions" / f"{ILLEGAL}.json"
    assert str(err.value) == f"{path}: {says}"


def test_not_an_object_is_a_format_error(tmp_path: Path) -> None:
    build(tmp_path, {HEALTH: [question(0)]})
    with pytest.raises(BenchmarkFormatError, match=rf"{HEALTH}\.json: expected an object"):
        load(tmp_path)


def test_invalid_json_names_the_file_and_line(tmp_path: Path) -> None:
    build(tmp_path, scenarios())
    bad = tmp_path / "data" / "processed_questions" / "05-EconomicHarm.json"
    bad.write_text('{\n  "0": {\n    "Question": "a",\n  }\n}\n', encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=r"05-EconomicHarm\.json: line 4: not valid"):
        load(tmp_path)


def test_no_question_files_is_not_mmsafetybench(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="not an MM-SafetyBench folder"):
        load(tmp_path)  # no data/processed_questions at all
    (tmp_path / "data" / "processed_questions").mkdir(parents=True)
    (tmp_path / "data" / "processed_questions" / "notes.txt").write_text("x")
    with pytest.raises(BenchmarkError, match=r"no \*\.json under data/processed_questions"):
        load(tmp_path)


def test_empty_question_files_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="no items"):
        load(build(tmp_path, {ILLEGAL: {}, HEALTH: {}}))
