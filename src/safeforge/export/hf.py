"""Hugging Face layout: a DatasetDict folder load_from_disk reads, the same splits as parquet
for load_dataset, and a README.md dataset card so the folder can be pushed to the Hub as is."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import yaml
from tqdm import tqdm

from safeforge.export.records import splits

if TYPE_CHECKING:
    import datasets

# the images come from sources with their own terms, which the pipeline does not record
LICENSE = "other"


def features(frame: pl.DataFrame) -> datasets.Features:
    """Plain 'string' rather than polars' large_string, which older readers of the card reject."""
    import datasets  # here, not at the top: 0.8 s that every other `safeforge` command skips

    found = datasets.Features.from_arrow_schema(frame.drop("image").to_arrow().schema)
    wide = datasets.Value("large_string")
    typed = {k: datasets.Value("string") if v == wide else v for k, v in found.items()}
    return datasets.Features({**typed, "image": datasets.Image()})


def with_images(dataset: pl.DataFrame, images_root: Path) -> pl.DataFrame:
    """Embed the bytes, not a path: the export must stay whole when moved off this machine."""
    paths = dataset["image_path"].unique(maintain_order=True).to_list()
    data = {rel: (images_root / rel).read_bytes() for rel in tqdm(paths, desc="read images")}
    return dataset.with_columns(
        image=pl.struct(
            bytes=pl.col("image_path").replace_strict(data, return_dtype=pl.Binary),
            path=pl.col("image_path").str.split("/").list.last(),
        )
    ).drop("image_path")


def card_text(dataset: pl.DataFrame, card: str | None) -> str:
    """The Hub reads the YAML front matter; `configs` points load_dataset(folder) at the parquet."""
    files = [{"split": s, "path": f"data/{s}.parquet"} for s in splits(dataset)]
    front = {
        "license": LICENSE,
        "task_categories": ["visual-question-answering"],
        "tags": ["safety", "multimodal"],
        "configs": [{"config_name": "default", "data_files": files}],
    }
    front_matter = yaml.safe_dump(front, sort_keys=False)
    sizes = dict(dataset.group_by("split").len().iter_rows())
    counts = ", ".join(f"{s}: {sizes[s]}" for s in splits(dataset))
    body = card or (
        f"# safeforge dataset\n\n{dataset.height} records over "
        f"{dataset['image_path'].n_unique()} images ({counts}).\n"
    )
    return f"---\n{front_matter}---\n\n{body}"


def write(dataset: pl.DataFrame, images_root: Path, folder: Path, card: str | None) -> int:
    import datasets  # see features()

    frame = with_images(dataset, images_root)
    feats = features(frame)
    parts = {
        split: datasets.Dataset.from_polars(frame.filter(pl.col("split") == split), features=feats)
        for split in splits(dataset)
    }
    dd = datasets.DatasetDict(parts)
    dd.save_to_disk(folder)
    (folder / "data").mkdir()
    for split, part in dd.items():
        part.to_parquet(folder / "data" / f"{split}.parquet")
    (folder / "README.md").write_text(card_text(dataset, card), encoding="utf-8")
    return dataset["image_path"].n_unique()
