"""What every benchmark shares: image paths kept inside the root, category maps, CSV errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from benchmark_standins import benchmark_spec, stand_in_image
from helpers import ROOT

import safeforge.benchmarks
from safeforge.benchmarks.base import (
    ADAPTERS,
    UNMAPPED,
    UNSPECIFIED,
    BenchmarkFormatError,
    category_mapper,
    get_adapter,
    read_csv,
    resolve_image,
)
from safeforge.config import OWN_TEST

PACKAGE = Path(safeforge.benchmarks.__file__).parent


def test_resolve_image_keeps_paths_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    inside = stand_in_image(root / "img" / "a.png")
    outside = stand_in_image(tmp_path / "elsewhere.png")
    os.symlink(outside, root / "img" / "out.png")
    os.symlink(inside, root / "img" / "in.png")
    assert resolve_image(root, "img/a.png") == (inside.resolve(), None)
    assert resolve_image(root, "img/in.png") == (inside.resolve(), None)  # a link within: fine
    assert resolve_image(root, "img/out.png") == (None, "path_escapes_root")
    assert resolve_image(root, "../elsewhere.png") == (None, "path_escapes_root")
    assert resolve_image(root, str(outside)) == (None, "path_escapes_root")
    assert resolve_image(root, "img/none.png") == (None, "missing_image")
    assert resolve_image(root, "img") == (None, "missing_image")  # a folder is not an image
    assert resolve_image(root, None) == (None, "no_image")


def test_category_map_ignores_case_and_falls_back_to_the_category() -> None:
    lookup = category_mapper(
        {"Risky Behavior": "physical_injury", "risky behavior/violence": "violence_and_weapons"},
        taxonomy=["physical_injury", "violence_and_weapons"],
    )
    assert lookup("risky behavior/Violence") == "violence_and_weapons"
    assert lookup("RISKY BEHAVIOR/political") == "physical_injury"
    assert lookup("deception") == UNMAPPED
    assert lookup("") == UNSPECIFIED


def test_a_map_into_an_unknown_category_is_a_config_error() -> None:
    with pytest.raises(KeyError, match="not_a_category"):
        category_mapper({"x": "not_a_category"}, taxonomy=["privacy"])


def test_csv_with_a_byte_order_mark_reads_and_bad_bytes_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_bytes("\ufeffa,b\n1,2\n3,4\n".encode())
    assert [row for _, row in read_csv(good, ["a", "b"])] == [
        {"a": "1", "b": "2"},
        {"a": "3", "b": "4"},
    ]
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    with pytest.raises(BenchmarkFormatError, match=r"ragged.csv: line 3: wrong number"):
        list(read_csv(ragged, ["a", "b"]))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"a,b\n1,caf\xe9\n")
    with pytest.raises(BenchmarkFormatError, match=r"latin.csv.*not UTF-8"):
        list(read_csv(latin, ["a", "b"]))


def test_every_conf_names_a_registered_adapter_and_a_version() -> None:
    for path in sorted((ROOT / "conf/benchmarks").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        version = raw.get("version")
        assert isinstance(version, str) and version, f"{path}: `version` must be a string"
        spec = benchmark_spec(path.stem)
        assert spec["version"] == version
        if spec["adapter"] != OWN_TEST:
            adapter = get_adapter(spec["adapter"])
            if adapter.check is not None:
                adapter.check(spec, f"benchmarks.{path.stem}")
    assert set(ADAPTERS) == {
        "figstep", "json_records", "mmsafeaware", "mmsafetybench", "mssbench", "vlguard",
    }  # fmt: skip
    with pytest.raises(KeyError, match=r"unknown benchmark adapter 'salad'; known: \["):
        get_adapter("salad")
