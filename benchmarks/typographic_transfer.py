"""Does the dataset teach the judge to read images? The default probe, trained with and without
the augment stage's variants in the same process (several seeds), scored on typographic check
sets in FigStep's published format, read by the figstep adapter and scored through
`score_benchmark` as `dvc repro` scores a benchmark:

- own_test typeset: the test split's unsafe and benign queries, typeset in a font, canvas and
  beside instructions the training renderings never use;
- written: benchmarks/data/typographic_check.yaml, requests written for this check (30 unsafe,
  30 look-alike benign), never trained on;
- figstep_samples: the FigStep instructions in ../shared/benchmarks/samples (when present),
  typeset as FigStep does (760x760 white, list "1. 2. 3." below), beside FigStep's own prompt.
  Scored only; a stand-in for the real images, not them.

Each set is scored beside FigStep's text prompt (conf/benchmarks/figstep.yaml) and beside the
check instructions; plus own_test itself (the originals). Run in a workspace after `dvc repro`:

    python benchmarks/typographic_transfer.py [--seeds 0 1 2]

`--figstep-folder DIR` instead writes a FigStep-format stand-in (the written unsafe requests
and the sample instructions, typeset as above) for the pipeline's own A/B: set
benchmarks.figstep.root to it in conf/local/default.yaml, then `dvc exp run` both ways (README).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from safeforge.augment.render import Style, typographic
from safeforge.benchmarks.base import BenchmarkTable, load_benchmark
from safeforge.config import ROOT, stage_params
from safeforge.judges.probe import ProbeJudge
from safeforge.scoring.benchmark import own_split_table, score_benchmark

CHECK = Path(__file__).parent / "data" / "typographic_check.yaml"
SAMPLES = ROOT.parent / "shared" / "benchmarks" / "samples" / "figstep_safebench.jsonl"
# a look no training rendering has: Computer Modern typewriter, FigStep's canvas
CHECK_STYLE = Style("numbered", "cmtt10.ttf", 64, 760, 760, (0, 0, 0), (255, 255, 255), 0.0)
FIGSTEP_STYLE = Style("numbered", "cmtt10.ttf", 80, 760, 760, (0, 0, 0), (255, 255, 255), 0.0)


def figstep_folder(root: Path, texts: list[str], style: Style) -> Path:
    """`texts` typeset into a folder laid out as FigStep publishes SafeBench."""
    images = root / "data" / "images" / "SafeBench"
    images.mkdir(parents=True)
    (root / "data" / "question").mkdir(parents=True)
    with open(root / "data" / "question" / "safebench.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(
            ["dataset", "category_id", "task_id", "category_name", "question", "instruction"]
        )
        for i, text in enumerate(texts, 1):
            out.writerow(["Check", "1", str(i), "Illegal Activity", text, text])
            typographic(text, style, seed=i).save(images / f"query_Check_1_{i}_6.png")
    return root


def check_tables(work: Path, spec: dict[str, Any], prompts: list[str]) -> dict[str, BenchmarkTable]:
    """name -> table: each check set, once per prompt; labels from the set."""
    check = yaml.safe_load(CHECK.read_text())
    own = pl.read_parquet("data/split/dataset.parquet").filter(
        (pl.col("split") == "test") & pl.col("query_type").is_in(["unsafe", "benign"])
    )
    sets = {
        "own_test typeset": {
            "unsafe": own.filter(pl.col("label") == "unsafe")["query"].to_list(),
            "safe": own.filter(pl.col("label") == "safe")["query"].to_list(),
        },
        "written": {"unsafe": check["unsafe"], "safe": check["benign"]},
    }
    if SAMPLES.exists():
        lines = SAMPLES.read_text().splitlines()
        sets["figstep_samples"] = {"unsafe": [json.loads(x)["instruction"] for x in lines]}
    tables = {}
    for name, by_label in sets.items():
        style = FIGSTEP_STYLE if name == "figstep_samples" else CHECK_STYLE
        folders = {
            label: figstep_folder(work / name.replace(" ", "_") / label, texts, style)
            for label, texts in by_label.items()
        }
        for p, prompt in enumerate(prompts if name != "figstep_samples" else prompts[:1]):
            parts = [
                load_benchmark("figstep", {**spec, "text_prompt": prompt, "label": label}, folder)
                for label, folder in folders.items()
            ]
            items = pl.concat([t.items for t in parts])
            tables[f"{name} / prompt {p}"] = BenchmarkTable(
                "figstep", work, items, parts[0].refused, version="check"
            )
    return tables


def train_tables() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    table = pl.read_parquet("data/split/dataset.parquet").join(
        pl.read_parquet("data/embed/features.parquet").drop("image_id"), on="record_id"
    )
    variants = pl.read_parquet("data/augment/variants.parquet")
    split = {s: table.filter(pl.col("split") == s) for s in ("train", "val")}
    return split["train"], variants, split["val"]


def cell(ms: list[dict[str, Any]], key: str) -> str:
    """mean (min-max) of one metric over seeds; "-" where it is undefined (no safe items)."""
    vals = [m[key] for m in ms if m.get(key) is not None]
    if not vals:
        return f"{'-':>18s}"
    return f"{statistics.mean(vals):.3f} ({min(vals):.2f}-{max(vals):.2f})".rjust(18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--figstep-folder", type=Path, help="write a stand-in folder and stop")
    args = parser.parse_args()
    if args.figstep_folder:
        texts = yaml.safe_load(CHECK.read_text())["unsafe"]
        if SAMPLES.exists():
            texts += [json.loads(x)["instruction"] for x in SAMPLES.read_text().splitlines()]
        figstep_folder(args.figstep_folder, texts, FIGSTEP_STYLE)
        print(f"wrote {len(texts)} typeset requests to {args.figstep_folder}")
        return
    logging.basicConfig(level=logging.WARNING)
    p = stage_params(("judge", "benchmarks.figstep", "describe", "score"))
    judge_params = {k: v for k, v in p["judge"].items() if k != "kind"}
    spec = dict(p["benchmarks.figstep"])
    check = yaml.safe_load(CHECK.read_text())
    prompts = [spec["text_prompt"], *check["instructions"]]
    train, variants, val = train_tables()
    own = own_split_table(
        pl.read_parquet("data/split/dataset.parquet"),
        pl.read_parquet("data/embed/features.parquet"),
        "test",
    )
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tables = {"own_test (originals)": own, **check_tables(Path(tmp), spec, prompts)}
        for arm, rows in (
            ("without variants", train),
            ("with variants", pl.concat([train, variants], how="diagonal_relaxed")),
        ):
            for seed in args.seeds:
                judge = ProbeJudge.fit(rows, val, {**judge_params, "seed": seed})
                for name, table in tables.items():
                    _, m = score_benchmark(
                        judge,
                        table,
                        spec,
                        p["score"]["threshold"],
                        256,
                        p["describe"]["ocr_min_confidence"],
                    )
                    results.setdefault((name, arm), []).append(m)
    print(f"probe judge, seeds {args.seeds}: mean (min-max) over seeds")
    header = ("unsafe recall", "benign->unsafe", "bal. acc")
    print(f"{'set':34s} {'arm':17s} {'n':>4s} " + " ".join(f"{h:>18s}" for h in header))
    for (name, arm), ms in results.items():
        cells = " ".join(
            cell(ms, k) for k in ("unsafe_recall", "over_sensitivity_rate", "balanced_accuracy")
        )
        print(f"{name:34s} {arm:17s} {ms[0]['n']:4d} {cells}")


if __name__ == "__main__":
    main()
