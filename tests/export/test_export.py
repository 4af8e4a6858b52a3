"""The exports load back with the readers trainers use (datasets, plain JSON) and match the
dataset row for row: splits, labels, categories, text and image pixels."""

from __future__ import annotations

import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import polars as pl
import pytest
import yaml
from benchmark_standins import stand_in_image
from PIL import Image

from safeforge.cli import main as cli
from safeforge.export import FORMATS, export_dataset
from safeforge.io import sha256_file

# image_path -> the image's bytes, as the fixture wrote them (a test deletes the root after
# exporting, to show the export stands on its own)
SOURCE: dict[str, bytes] = {}


@pytest.fixture
def small(tmp_path: Path) -> tuple[pl.DataFrame, Path]:
    """Rows shaped as data/split/dataset.parquet, one per split and query type (a contrast row
    shares its image with its split's unsafe record), stand-in images named by content hash
    under a private root, as ingest names them."""
    root = tmp_path / "root"
    rows = []
    for s, split in enumerate(("val", "train", "test")):  # not in train/val/test order
        kinds = (("unsafe", "unsafe"), ("benign", "safe"), ("contrast", "safe"))
        for q, (query_type, label) in enumerate(kinds):
            seed = s * 3 + (q if query_type != "contrast" else 0)
            staged = stand_in_image(tmp_path / "staged" / f"{seed}.png", seed, (40 + seed, 32))
            digest = sha256_file(staged)
            name = f"data/ingest/images/{digest}.png"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(staged, root / name)
            SOURCE[name] = staged.read_bytes()
            rows.append(
                {
                    "record_id": f"r{s}{q}",
                    "image_id": digest,
                    "image_path": name,
                    "scenario": f"scenario_{q}",
                    "category": ("privacy", "physical_injury")[q % 2],
                    "label": label,
                    "query_type": query_type,
                    "query": f"Can I do thing {s}{q} here?",
                    "risk_analysis": "A risk.",
                    "guidance": f"Guidance {s}{q}: be careful, here is a safer way.",
                    "pair_id": f"p{s}",
                    "similarity": 0.3 + q / 10,
                    "guidance_specific": q != 1,
                    "split": split,
                }
            )
    shutil.rmtree(tmp_path / "staged")
    return pl.DataFrame(rows), root


def pixels(image: Image.Image | Path | bytes) -> np.ndarray:
    if isinstance(image, Path):
        image = Image.open(image)
    elif isinstance(image, bytes):
        image = Image.open(io.BytesIO(image))
    return np.asarray(image.convert("RGB"))


def from_turns(rec: dict[str, Any], token: str) -> dict[str, Any]:
    human, gpt = rec["conversations"]
    assert (human["from"], gpt["from"]) == ("human", "gpt")
    assert human["value"].startswith(token)
    return {"query": human["value"][len(token) :], "guidance": gpt["value"]}


def read_back(fmt: str, out: Path, cache: Path) -> dict[str, dict[str, Any]]:
    """record_id -> the fields a trainer would see, read with that format's own reader."""
    found: dict[str, dict[str, Any]] = {}
    if fmt == "hf":
        for split, part in datasets.load_from_disk(str(out)).items():
            for rec in part:
                found[rec["record_id"]] = {
                    **rec,
                    "split_dir": split,
                    "pixels": pixels(rec["image"]),
                }
        return found
    for split_file in sorted(out.glob("*.json*")):
        text = split_file.read_text(encoding="utf-8")
        recs = json.loads(text) if fmt == "llava" else [json.loads(x) for x in text.splitlines()]
        for rec in recs:
            image = rec["image"] if fmt == "llava" else rec["images"][0]
            token = "<image>\n" if fmt == "llava" else "<image>"
            assert not Path(image).is_absolute() and (out / image).is_file()
            found[rec["id"]] = {
                **rec,
                **from_turns(rec, token),
                "split_dir": split_file.stem,
                "pixels": pixels(out / image),
                "image_bytes": (out / image).read_bytes(),
            }
    return found


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_round_trips(fmt: str, small: tuple[pl.DataFrame, Path], tmp_path: Path) -> None:
    dataset, root = small
    out = tmp_path / "out"
    summary = export_dataset(dataset, root, out, fmt, card="# card\n")
    want_rows = dict(Counter(dataset["split"].to_list()))
    assert summary == {
        "format": fmt,
        "out": str(out),
        "rows": want_rows,
        "images": dataset["image_path"].n_unique(),
    }
    shutil.rmtree(root)  # the export must stand on its own
    got = read_back(fmt, out, tmp_path / "cache")
    assert sorted(got) == sorted(dataset["record_id"].to_list())
    keys = ("split", "label", "category", "query_type")
    assert Counter(tuple(r[k] for k in keys) for r in got.values()) == Counter(
        dataset.select(keys).iter_rows()
    )
    for row in dataset.iter_rows(named=True):
        rec = got[row["record_id"]]
        for key in ("query", "guidance", "label", "category", "query_type", "scenario", "split"):
            assert rec[key] == row[key], (row["record_id"], key)
        assert rec["split_dir"] == row["split"]
        assert np.array_equal(rec["pixels"], pixels(SOURCE[row["image_path"]]))
        if "image_bytes" in rec:
            assert rec["image_bytes"] == SOURCE[row["image_path"]]
    if fmt != "hf":
        assert len(list((out / "images").iterdir())) == dataset["image_path"].n_unique()
    assert not list(tmp_path.glob("out.*")), "the staging folder is gone"


def test_hf_keeps_every_column_and_embeds_image_bytes(
    small: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    dataset, root = small
    out = tmp_path / "out"
    export_dataset(dataset, root, out, "hf", card="# safeforge card\n\nbody\n")
    dd = datasets.load_from_disk(str(out))
    columns = [c for c in dataset.columns if c != "image_path"] + ["image"]
    assert set(dd) == set(dataset["split"]) and all(dd[s].column_names == columns for s in dd)
    assert isinstance(dd["train"].features["image"], datasets.Image)
    raw = dd["train"].cast_column("image", datasets.Image(decode=False))
    by_id = dict(zip(raw["record_id"], raw["image"], strict=True))
    for row in dataset.filter(pl.col("split") == "train").iter_rows(named=True):
        assert by_id[row["record_id"]]["bytes"] == SOURCE[row["image_path"]]
        assert by_id[row["record_id"]]["path"] == Path(row["image_path"]).name
    front, body = (out / "README.md").read_text(encoding="utf-8").split("---\n", 2)[1:]
    meta = yaml.safe_load(front)
    assert meta["task_categories"] == ["visual-question-answering"]
    assert set(meta["tags"]) == {"safety", "multimodal"} and meta["license"]
    assert body.strip() == "# safeforge card\n\nbody"


def test_hf_parquet_loads_with_load_dataset(
    small: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    dataset, root = small
    out = tmp_path / "out"
    export_dataset(dataset, root, out, "hf")
    disk = datasets.load_from_disk(str(out))
    files = {s: str(out / "data" / f"{s}.parquet") for s in disk}
    cache = str(tmp_path / "hf-cache")  # load_dataset caches; never in ~/.cache
    by_files = datasets.load_dataset("parquet", data_files=files, cache_dir=cache)
    by_card = datasets.load_dataset(str(out), cache_dir=cache)  # README's `configs`
    for loaded in (by_files, by_card):
        assert set(loaded) == set(disk)
        for split in disk:
            assert loaded[split].num_rows == disk[split].num_rows
            assert isinstance(loaded[split].features["image"], datasets.Image)
            a, b = loaded[split][0], disk[split][0]
            assert a["record_id"] == b["record_id"] and a["guidance"] == b["guidance"]
            assert np.array_equal(pixels(a["image"]), pixels(b["image"]))
    assert "safeforge dataset" in (out / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("broken", ["missing", "unreadable"])
def test_a_bad_image_fails_before_anything_is_written(
    broken: str, small: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    dataset, root = small
    row = dataset.row(-2, named=True)  # the benign record: its image is its own
    if broken == "missing":
        (root / row["image_path"]).unlink()
    else:
        (root / row["image_path"]).write_bytes(b"not an image")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=broken) as err:
        export_dataset(dataset, root, out, "llava")
    assert row["record_id"] in str(err.value) and row["image_path"] in str(err.value)
    assert not out.exists() and not list(tmp_path.glob("out*"))


def test_an_existing_export_is_kept_unless_overwrite(
    small: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    dataset, root = small
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_dataset(dataset, root, out, "sharegpt")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    export_dataset(dataset, root, out, "sharegpt", overwrite=True)
    assert not (out / "mine.txt").exists() and (out / "train.jsonl").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "root"]


def test_an_empty_out_folder_and_a_stale_staging_folder_are_fine(
    small: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    dataset, root = small
    out = tmp_path / "out"
    out.mkdir()
    stale = out.with_name(f"out.tmp-{os.getpid()}")
    stale.mkdir()
    (stale / "half.json").write_text("[")
    export_dataset(dataset, root, out, "llava")
    assert not stale.exists() and not (out / "half.json").exists()
    assert (out / "train.json").is_file()


def test_an_unknown_format_names_the_choices(
    small: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    dataset, root = small
    with pytest.raises(ValueError, match="hf, llava, sharegpt"):
        export_dataset(dataset, root, tmp_path / "out", "coco")
    assert not (tmp_path / "out").exists()


def test_the_export_command_writes_a_format_from_a_workspace(
    small: tuple[pl.DataFrame, Path], tmp_path: Path, capsys
) -> None:
    dataset, root = small
    dataset.write_parquet(tmp_path / "dataset.parquet")
    (tmp_path / "card.md").write_text("# a card\n")
    args = ["export", "--dataset", str(tmp_path / "dataset.parquet"), "--images-root", str(root)]
    args += ["--card", str(tmp_path / "card.md"), "--format", "llava", "--out", str(tmp_path / "x")]
    assert cli(args) == 0
    assert "train: 3, val: 3, test: 3" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "x/test.json").read_text())) == 3
    assert cli(args) == 2  # exists: refused with a message, not a traceback
    assert "overwrite" in capsys.readouterr().err
