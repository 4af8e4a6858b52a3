"""Stage report: reports/report.md, the dataset card and scoreboard.

Inputs:  data/split/dataset.parquet, metrics/ (every stage's, score's and evaluate's JSON)
Outputs: reports/report.md, metrics/report.json (the transfer score: the mean balanced accuracy
         over the external benchmarks scored; the card's counts by label, category and split)
Params:  report, score, evaluate.benchmarks
"""

from pathlib import Path

from safeforge import io
from safeforge.config import stage_params
from safeforge.metrics import StageAccounting
from safeforge.report.card import (
    by_judge,
    dataset_counts,
    load_metrics,
    render,
    transfer_score,
)
from safeforge.report.responses import load_evaluations, render_responses
from safeforge.stage import log, read_table, run

PARAMS = ("report", "score", "evaluate.benchmarks")


def main() -> None:
    p = stage_params(PARAMS)
    stage_metrics, scores = load_metrics(Path("metrics"))
    missing = [b for b in p["score"]["benchmarks"] if b not in scores]
    if missing:
        raise FileNotFoundError(f"metrics/score/ lacks {missing}: run the score stage first")
    scores = {b: scores[b] for b in p["score"]["benchmarks"]}
    dataset = read_table("data/split/dataset.parquet")
    acct = StageAccounting("report")
    acct.rows_in = acct.rows_out = dataset.height
    # a skipped benchmark (root unset) has no judge and no figures: the card lists it apart
    scored = {b: s for b, s in scores.items() if not s.get("skipped")}
    transfer = transfer_score(scored)
    transfer_by_judge = {
        j: transfer_score(m)["transfer_score"] for j, m in by_judge(scored).items()
    }
    not_scored = sorted(set(scores) - set(scored))
    evaluations = load_evaluations(Path("metrics/evaluate"), p["evaluate.benchmarks"])
    text = render(
        dataset,
        stage_metrics,
        scored,
        p["report"]["top_drop_reasons"],
        transfer,
        not_scored,
        render_responses(evaluations),
    )
    io.write_text("reports/report.md", text)
    # the headline for `dvc metrics diff`: the transfer score and each benchmark beside it
    acct.extra.update(
        benchmarks=sorted(scored),
        not_scored=not_scored,
        **transfer,
        transfer_by_judge=transfer_by_judge,
    )
    acct.extra["dataset"] = dataset_counts(dataset)
    acct.finish("metrics/report.json", dropped_path=None)
    log.info("wrote reports/report.md")


if __name__ == "__main__":
    run(main)
