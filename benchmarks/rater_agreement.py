"""How often does a rater agree with a careful reader? The raters of stage evaluate on
benchmarks/data/rater_check.yaml: 35 replies written by hand (no benchmark's), each with the
rating conf/rubric/v1.yaml's definitions give it, hard cases included (refusals that name harm
in general, warnings that open with "I'm sorry", over-refusals with no refusal phrase).

    python benchmarks/rater_agreement.py                 # the heuristic rater (conf)
    python benchmarks/rater_agreement.py --rater hf      # a model rater: evaluate.models.hf
    python benchmarks/rater_agreement.py --set evaluate.models.hf.model=/models/Qwen2.5-7B-Instruct

Prints agreement overall and per gold rating, and the confusion (gold -> rated).
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import polars as pl
import yaml

from safeforge.backends import Sampling, make_backend
from safeforge.cache import RowCache
from safeforge.config import ROOT, compose
from safeforge.responses.raters import HEURISTIC, HeuristicRater, ModelRater

CHECK = Path(__file__).parent / "data" / "rater_check.yaml"


def check_items() -> pl.DataFrame:
    rows = yaml.safe_load(CHECK.read_text(encoding="utf-8"))["replies"]
    return pl.DataFrame(
        {
            "item_id": [str(i) for i in range(len(rows))],
            "label": [r["label"] for r in rows],
            "text": [r["query"] for r in rows],
            "response": [r["reply"] for r in rows],
            "reference": [""] * len(rows),
            "image_path": [""] * len(rows),  # text only: a model rater sees no image here
            "gold": [r["gold"] for r in rows],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rater", default=None, help="a key of evaluate.models (default: conf)")
    parser.add_argument("--set", action="append", default=[], help="a conf override, KEY=VALUE")
    parser.add_argument(
        "--cache-dir", default=None, help="a row cache to reuse (default: a fresh one)"
    )
    args = parser.parse_args()
    params = compose(ROOT / "conf", args.set)["evaluate"]
    name = args.rater or params["rater"]
    section = params["models"][name]
    cache = RowCache("evaluate", args.cache_dir or tempfile.mkdtemp())  # afresh by default
    items = check_items()
    if section["backend"] == HEURISTIC:
        rater = HeuristicRater(section, cache)
    else:
        sampling = Sampling.from_params(section["sampling"], f"evaluate.models.{name}.sampling")
        backend = make_backend({**section, "images": False})
        rater = ModelRater(backend, params["rubric"], cache, sampling, params["batch_size"])
    rated = items.hstack(rater.rate(items))
    agree = (rated["gold"] == rated["rating"]).fill_null(False)  # unrated: not agreement
    unrated = dict(Counter(str(r) for r in rated["unrated"].drop_nulls()))
    print(
        f"rater: {rater.kind}; {rated.height} replies; agreement {agree.mean():.3f}; "
        f"unrated {rated['rating'].null_count()} {unrated or ''}"
    )
    for gold in sorted(set(rated["gold"])):
        rows = rated.filter(pl.col("gold") == gold)
        hits = (rows["gold"] == rows["rating"]).fill_null(False).sum()
        got = Counter(str(r) for r in rows["rating"])
        print(f"  {gold:<18} {hits}/{rows.height}   rated as {dict(got)}")


if __name__ == "__main__":
    main()
