"""`safeforge pr-report` on a real git + DVC repo of its own: a two-stage pipeline whose params
change between two commits, an experiment, a shallow clone that lacks the base, a revision that
does not exist. Real git, real dvc, real vl-convert drawing."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import run_cmd
from PIL import Image

from safeforge.cli import main

CATEGORIES = ("drugs", "privacy", "weapons")
LABELS = ("safe", "unsafe")

MAKE = """
import json, os, yaml
p = yaml.safe_load(open("params.yaml"))["make"]
n, every = p["n"], p["drop_every"]
rows = [
    {"i": i, "image": i // 2, "category": CATEGORIES[i % 3], "label": LABELS[i % 2],
     "split": "test" if i % 4 == 0 else "train"}
    for i in range(n)
]
kept = [r for r in rows if r["i"] % every]
for d in ("metrics", "perf", "plots/make"):
    os.makedirs(d, exist_ok=True)
json.dump(kept, open("rows.json", "w"))
json.dump({"stage": "make", "rows_in": n, "rows_out": len(kept),
           "dropped": {"too_short": n - len(kept)}}, open("metrics/make.json", "w"))
# no clock: the seconds follow the params, so the test can read them back exactly
json.dump({"stage": "make", "seconds": n / 10, "rows_per_second": 10.0, "cache_hits": 0,
           "cache_misses": n}, open("perf/make.json", "w"))
with open("plots/make/curve.csv", "w") as f:
    f.write("step,loss\\n" + "".join(f"{i},{1 / (1 + i * n)}\\n" for i in range(5)))
with open("plots/make/fixed.csv", "w") as f:
    f.write("step,loss\\n0,1\\n1,0.5\\n")
with open("perf/make_batches.csv", "w") as f:
    f.write("batch,seconds\\n" + "".join(f"{b},{b * n / 100}\\n" for b in range(3)))
"""

REPORT_V1 = """
import json, os
from collections import Counter
rows = json.load(open("rows.json"))
by_category = {}
for r in rows:
    by_category.setdefault(r["category"], Counter())[r["label"]] += 1
dataset = {
    "records": len(rows),
    "images": len({r["image"] for r in rows}),
    "by_label": dict(Counter(r["label"] for r in rows)),
    "by_category": {c: dict(v) for c, v in by_category.items()},
    "by_split": dict(Counter(r["split"] for r in rows)),
}
json.dump({"stage": "report", "rows_in": len(rows), "rows_out": len(rows), "dropped": {},
           "transfer_score": round(0.5 + len(rows) / 100, 3), "dataset": dataset},
          open("metrics/report.json", "w"))
json.dump({"stage": "report", "seconds": 0.25, "rows_per_second": 4.0 * len(rows),
           "cache_hits": 0, "cache_misses": 0}, open("perf/report.json", "w"))
"""

# the head's report stage also writes a score's perf file, which the base predates
REPORT_V2 = (
    REPORT_V1
    + """
os.makedirs("perf/score", exist_ok=True)
json.dump({"stage": "score", "seconds": 2.0, "rows_per_second": 50.0, "items_per_second": 50.0,
           "cache_hits": 1, "cache_misses": 0}, open("perf/score/own_test.json", "w"))
"""
)

DVC_YAML = f"""
stages:
  make:
    cmd: {sys.executable} make.py
    deps: [make.py]
    params: [make]
    outs:
      - rows.json: {{cache: false}}
      - perf/make.json: {{cache: false}}
    metrics: [metrics/make.json: {{cache: false}}]
    plots:
      - plots/make/curve.csv: {{cache: false, x: step, y: loss}}
      - plots/make/fixed.csv: {{cache: false, x: step, y: loss}}
      - perf/make_batches.csv: {{cache: false, x: batch, y: seconds}}
  report:
    cmd: {sys.executable} report.py
    deps: [report.py, rows.json]
    outs:
      - perf/report.json: {{cache: false}}
    metrics: [metrics/report.json: {{cache: false}}]
plots:
  - loss_curves:
      x: step
      y:
        plots/make/curve.csv: loss
"""


def _params(n: int) -> str:
    return f"make:\n  n: {n}\n  drop_every: 5\n"


def _counts(n: int) -> dict:
    """The card the scripts write for make.n = n (computed independently of them)."""
    rows = [i for i in range(n) if i % 5]
    by_category: dict = {}
    for i in rows:
        cat = by_category.setdefault(CATEGORIES[i % 3], {})
        cat[LABELS[i % 2]] = cat.get(LABELS[i % 2], 0) + 1
    return {"records": len(rows), "by_category": by_category}


def _git(repo: Path, *args: str) -> str:
    return run_cmd(["git", *args], cwd=repo).stdout.strip()


def _dvc(repo: Path, *args: str) -> None:
    run_cmd([sys.executable, "-m", "dvc", *args], cwd=repo)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Commit 1 (branch `base`): make.n=12; commit 2 (branch `main`, checked out): make.n=18
    and a report stage that also writes perf/score/; experiment `bigger` on it: make.n=24."""
    repo = tmp_path_factory.mktemp("pr") / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "test@example.com")
    _git(repo, "config", "user.name", "test")
    _dvc(repo, "init", "-q")
    _dvc(repo, "config", "core.analytics", "false")
    header = f"CATEGORIES = {CATEGORIES!r}\nLABELS = {LABELS!r}\n"
    (repo / "make.py").write_text(header + textwrap.dedent(MAKE))
    (repo / "report.py").write_text(textwrap.dedent(REPORT_V1))
    (repo / "dvc.yaml").write_text(textwrap.dedent(DVC_YAML))
    (repo / "params.yaml").write_text(_params(12))
    _dvc(repo, "repro", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base: n=12")
    _git(repo, "branch", "base")
    (repo / "params.yaml").write_text(_params(18))
    (repo / "report.py").write_text(textwrap.dedent(REPORT_V2))
    _dvc(repo, "repro", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "head: n=18, perf/score")
    _dvc(repo, "exp", "run", "-q", "-S", "make.n=24", "-n", "bigger")
    _git(repo, "checkout", "-q", "--", ".")  # the experiment ran in the workspace: back to HEAD
    assert not _git(repo, "status", "--porcelain")
    return repo


def pr_report(repo: Path, out: Path, *args: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.chdir(repo)
    return main(["pr-report", *args, "--out", str(out)])


def section(md: str, title: str) -> str:
    """The text under `## title`, up to the next `## `."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", md, re.S | re.M)
    assert match, f"no section {title!r} in:\n{md}"
    return match.group(1)


def table_row(md: str, *cells: str) -> list[str]:
    """The cells of the markdown table row that starts with `cells`."""
    for line in md.splitlines():
        row = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and row[: len(cells)] == list(cells):
            return row
    raise AssertionError(f"no row starting {cells} in:\n{md}")


def png_links(md: str) -> list[str]:
    return re.findall(r"\]\((plots/[^)]+\.png)\)", md)


def assert_png(path: Path) -> None:
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG" and im.mode in ("RGB", "RGBA")
        assert im.width > 100 and im.height > 100


def test_report_of_a_param_change(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "prr"
    assert pr_report(repo, out, "--base", "HEAD~1", monkeypatch=monkeypatch) == 0
    md = (out / "report.md").read_text()

    params = section(md, "Params")
    assert table_row(params, "params.yaml", "make.n")[2:] == ["12", "18"]
    assert "drop_every" not in params  # changed rows only
    metrics = section(md, "Metrics")
    for path, key in [
        ("metrics/make.json", "rows_in"),
        ("metrics/make.json", "dropped.too_short"),
        ("metrics/report.json", "transfer_score"),
        ("metrics/report.json", "dataset.records"),
    ]:
        assert table_row(metrics, path, key)
    assert table_row(metrics, "metrics/make.json", "rows_in")[2:4] == ["12", "18"]
    assert "seconds" not in metrics  # timings live in perf/, not in the metrics diff

    card = section(md, "Dataset card")
    base, head = _counts(12), _counts(18)
    for cat in CATEGORIES:
        for label in LABELS:
            b, h = base["by_category"][cat].get(label, 0), head["by_category"][cat].get(label, 0)
            row = table_row(card, cat, label)
            assert row[2:4] == [str(b), str(h)], (cat, label, row)
            assert row[4] == ("0" if b == h else f"{h - b:+d}")
    assert table_row(card, "records")[1:] == [
        str(base["records"]),
        str(head["records"]),
        f"+{head['records'] - base['records']}",
    ]
    assert table_row(card, "split train") and table_row(card, "label unsafe")

    plots = section(md, "Plots")
    main_part, timings = plots.split("<details>")
    drawn = png_links(main_part)
    assert sorted(drawn) == ["plots/loss_curves.png", "plots/plots_make_curve.csv.png"]
    assert "`plots/make/fixed.csv`" in main_part  # unchanged: named, not drawn
    assert not (out / "plots" / "plots_make_fixed.csv.png").exists()
    assert png_links(timings) == ["plots/perf_make_batches.csv.png"]
    for link in drawn + png_links(timings):
        assert_png(out / link)

    assert "<summary>" in timings and timings.strip().endswith("</details>")
    assert table_row(timings, "make")[1:] == ["1.2", "1.8", "1.50"]
    assert table_row(timings, "report")[1:] == ["0.25", "0.25", "1.00"]
    assert table_row(timings, "score/own_test")[1:] == ["n/a", "2", "n/a"]  # base predates it


def test_head_can_be_an_experiment_name(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "prr"
    args = ("--base", "HEAD", "--head", "bigger")
    assert pr_report(repo, out, *args, monkeypatch=monkeypatch) == 0
    md = (out / "report.md").read_text()
    exp_sha = _git(repo, "for-each-ref", "--format=%(objectname)", "refs/exps/**/bigger")
    assert exp_sha and exp_sha[:12] in md.splitlines()[3]  # head: `bigger` (<its commit>)
    assert table_row(section(md, "Params"), "params.yaml", "make.n")[2:] == ["18", "24"]
    # the card is read at the experiment's commit, not from the workspace
    head = _counts(24)
    assert table_row(section(md, "Dataset card"), "records")[1:3] == [
        str(_counts(18)["records"]),
        str(head["records"]),
    ]
    assert table_row(section(md, "Dataset card"), "drugs", "unsafe")[3] == str(
        head["by_category"]["drugs"]["unsafe"]
    )
    assert "plots/plots_make_curve.csv.png" in png_links(md)


def test_a_shallow_clone_fetches_the_base(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clone = tmp_path / "clone"
    run_cmd(["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(clone)], cwd=tmp_path)
    assert _git(clone, "rev-parse", "--is-shallow-repository") == "true"
    assert run_cmd(["git", "rev-parse", "--verify", "origin/base"], clone, check=False).returncode
    out = tmp_path / "prr"
    with caplog.at_level("INFO", logger="safeforge.report.revisions"):
        assert pr_report(clone, out, "--base", "origin/base", monkeypatch=monkeypatch) == 0
    assert any("fetched it from origin" in r.getMessage() for r in caplog.records)
    md = (out / "report.md").read_text()
    assert "fetched from origin" in md.splitlines()[2]
    assert table_row(section(md, "Params"), "params.yaml", "make.n")[2:] == ["12", "18"]
    assert _git(clone, "rev-parse", "--is-shallow-repository") == "true"


def test_a_revision_that_cannot_be_found_fails_with_one_error_line(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    clone = tmp_path / "clone"
    run_cmd(["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(clone)], cwd=tmp_path)
    out = tmp_path / "prr"
    assert pr_report(clone, out, "--base", "origin/nosuch", monkeypatch=monkeypatch) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert len(errors) == 1
    assert "'origin/nosuch' not found" in errors[0] and "git fetch" in errors[0]
    md = (out / "report.md").read_text()
    assert "no comparison was made" in md and "origin/nosuch" in md
    assert not (out / "plots").exists()


def test_an_unknown_name_without_an_origin_is_refused(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # no origin in this repo: nothing to fetch, the error says so
    out = tmp_path / "prr"
    assert pr_report(repo, out, "--base", "HEAD", "--head", "smaller", monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err
    assert "'smaller' not found" in err and "no remote named origin" in err
