"""A pull request's report: what a change did to the params, the metrics, the dataset and the
run time, base against head.

`safeforge pr-report --base REV [--head REV] --out DIR` writes DIR/report.md:
- `dvc params diff` and `dvc metrics diff` as markdown (changed rows only; "no change" if none);
- the dataset card's counts (metrics/report.json's `dataset`) by category and label, before and
  after, and the totals;
- every plot of `dvc plots diff --json` whose data differ between the two revisions, drawn to
  DIR/plots/<name>.png with vl-convert and linked (relative links);
- timings from perf/ (perf/<stage>.json, perf/score/<benchmark>.json) in a collapsed section,
  beside the plots whose id starts with perf/.

A revision is anything git resolves (branch, SHA, origin/main) or a DVC experiment name (found
among the exp refs, preferring the one based on HEAD, as DVC does). Head defaults to the
workspace. In a shallow checkout a base that is not there is fetched from origin first; when it
still cannot be found, report.md says so and the command fails with one error line.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeforge import io
from safeforge.labels import LABELS
from safeforge.metrics import PERF_DIR
from safeforge.report.card import markdown_table
from safeforge.report.revisions import WORKSPACE, PrReportError, Rev, repo_root, resolve, run_dvc

log = logging.getLogger(__name__)

REPORT_METRICS = "metrics/report.json"  # the report stage's metrics; `dataset` holds the card
PLOTS_DIR = "plots"  # under --out: one PNG per drawn plot
REV_FIELD = "rev"  # the field DVC adds to each data point of a filled Vega-Lite spec


@dataclass
class Plot:
    id: str
    files: list[str] = field(default_factory=list)  # relative to --out
    changed: bool | None = None  # None: the data could not be compared


# ---- files at a revision ---------------------------------------------------------------------
class Files:
    """Read a revision's files through DVC (git-tracked or DVC-tracked alike)."""

    def __init__(self, repo: Path, rev: Rev) -> None:
        from dvc.api import DVCFileSystem  # heavy: loaded only when a report is made

        self.fs = DVCFileSystem(str(repo), rev=rev.sha)

    def json(self, path: str) -> Any:
        try:
            return json.loads(self.fs.cat_file(path))
        except Exception:  # absent, unreadable or not JSON at this revision: "n/a"
            return None

    def find(self, folder: str, suffix: str) -> list[str]:
        try:
            return [p for p in self.fs.find(folder) if p.endswith(suffix)]
        except Exception:  # the folder predates this revision
            return []


def perf_seconds(files: Files) -> dict[str, float]:
    """perf/<stage>.json and perf/score/<benchmark>.json: seconds by stage (score/<name>)."""
    out = {}
    for path in files.find(PERF_DIR, ".json"):
        doc = files.json(path)
        if isinstance(doc, Mapping) and isinstance(doc.get("seconds"), (int, float)):
            out[path.removeprefix(f"{PERF_DIR}/").removesuffix(".json")] = float(doc["seconds"])
    return out


def dataset_counts(files: Files) -> Mapping[str, Any] | None:
    doc = files.json(REPORT_METRICS)
    dataset = doc.get("dataset") if isinstance(doc, Mapping) else None
    return dataset if isinstance(dataset, Mapping) else None


# ---- plots -----------------------------------------------------------------------------------
def safe_name(plot_id: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", plot_id).strip("._") or "plot"
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name


def data_by_rev(spec: Mapping[str, Any]) -> dict[str, list[str]] | None:
    """A filled spec's data points, grouped by the revision DVC tagged them with."""
    values = spec.get("data", {}).get("values") if isinstance(spec.get("data"), Mapping) else None
    if not isinstance(values, list):
        return None
    out: dict[str, list[str]] = {}
    for point in values:
        rest = {k: v for k, v in point.items() if k != REV_FIELD}
        out.setdefault(str(point.get(REV_FIELD)), []).append(json.dumps(rest, sort_keys=True))
    return {rev: sorted(points) for rev, points in out.items()}


def render_plots(
    repo: Path, base: Rev, head: Rev, out: Path
) -> tuple[list[Plot], list[Plot], list[str]]:
    """Draw the plots whose data differ; return (drawn, unchanged, dvc's errors)."""
    import vl_convert  # heavy: loaded only when a report is made

    revs = [base.arg] + ([head.arg] if head.arg else [])
    with tempfile.TemporaryDirectory() as tmp:  # image plots: dvc copies each revision there
        doc = json.loads(run_dvc(repo, "plots", "diff", *revs, "--json", "-o", tmp) or "{}")
        errors = [
            f"`{e.get('name', '?')}` at `{e.get('rev', '?')}`: {e.get('msg') or e.get('type')}"
            for e in doc.get("errors", [])
        ]
        drawn, unchanged, taken = [], [], set()
        for plot_id, entries in sorted(doc.get("data", {}).items()):
            plot = Plot(plot_id)
            vega = [e for e in entries if e.get("type") == "vega"]
            images = [e for e in entries if e.get("type") == "image"]
            if vega:
                spec = vega[0]["content"]
                by_rev = data_by_rev(spec)
                if by_rev is not None:
                    plot.changed = by_rev.get(base.label) != by_rev.get(head.label)
                if plot.changed is not False:
                    spec = {"background": "white", **spec}  # readable on a dark page too
                    name = f"{PLOTS_DIR}/{safe_name(plot_id, taken)}.png"
                    io.write_bytes(out / name, vl_convert.vegalite_to_png(spec))
                    plot.files.append(name)
            elif images:
                blobs = {}
                for e in images:
                    path = Path(e["url"]) if Path(e["url"]).is_absolute() else Path(tmp) / e["url"]
                    blobs[e["revisions"][0]] = path.read_bytes() if path.is_file() else None
                plot.changed = blobs.get(base.label) != blobs.get(head.label)
                if plot.changed:
                    for rev in (base.label, head.label):  # base first, as in the tables
                        if (blob := blobs.get(rev)) is not None:
                            suffix = Path(images[0]["url"]).suffix or ".png"
                            name = f"{PLOTS_DIR}/{safe_name(f'{plot_id}@{rev}', taken)}{suffix}"
                            io.write_bytes(out / name, blob)
                            plot.files.append(name)
            else:
                continue  # no data at either revision (a JSON object is no plot data)
            (drawn if plot.files else unchanged).append(plot)
    return drawn, unchanged, errors


# ---- markdown --------------------------------------------------------------------------------
def _table_rows(md: str) -> int:
    return max(0, sum(1 for ln in md.splitlines() if ln.startswith("|")) - 2)


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _change(base: Any, head: Any) -> str:
    if not isinstance(base, (int, float)) or not isinstance(head, (int, float)):
        return "n/a"
    delta = head - base
    return "0" if delta == 0 else f"{delta:+,}" if isinstance(delta, int) else f"{delta:+.3f}"


def _label_order(labels: set[str]) -> list[str]:
    return [lb for lb in LABELS if lb in labels] + sorted(labels - set(LABELS))


def _get(counts: Mapping | None, *keys: str) -> Any:
    """A count in the card (0 where the card has no such key), or None with no card."""
    if counts is None:
        return None
    value: Any = counts
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return 0 if value is None else value


def card_section(base: Mapping | None, head: Mapping | None, b: Rev, h: Rev) -> list[str]:
    lines = ["## Dataset card", ""]
    if base is None and head is None:
        return [*lines, f"No dataset counts (`{REPORT_METRICS}`: `dataset`) at either revision."]
    for rev, counts in ((b, base), (h, head)):
        if counts is None:
            lines += [f"No dataset counts in `{REPORT_METRICS}` at {rev.describe()}: n/a.", ""]
    cards = [c for c in (base, head) if c is not None]

    def keys(*path: str) -> set[str]:
        return {k for c in cards for k in (_get(c, *path) or {})}

    rows = []
    for cat in sorted(keys("by_category")):
        for label in _label_order(keys("by_category", cat)):
            vb, vh = _get(base, "by_category", cat, label), _get(head, "by_category", cat, label)
            rows.append([cat, label, _num(vb), _num(vh), _change(vb, vh)])
    lines += [*markdown_table(["category", "label", "base", "head", "change"], rows), ""]
    totals = []
    for key in ("records", "images"):
        vb, vh = _get(base, key), _get(head, key)
        totals.append([key, _num(vb), _num(vh), _change(vb, vh)])
    for group, order in (("by_label", _label_order), ("by_split", sorted)):
        for key in order(keys(group)):
            vb, vh = _get(base, group, key), _get(head, group, key)
            name = f"{group.removeprefix('by_')} {key}"
            totals.append([name, _num(vb), _num(vh), _change(vb, vh)])
    return [*lines, "Totals:", "", *markdown_table(["", "base", "head", "change"], totals)]


def _plot_links(plots: list[Plot]) -> list[str]:
    return [
        f"- `{p.id}`: "
        + ", ".join(f"[{Path(f).name}]({f})" for f in p.files)
        + ("" if p.changed else " (could not compare the data: drawn anyway)")
        for p in plots
    ]


def timings_section(
    base: dict[str, float], head: dict[str, float], b: Rev, h: Rev, plots: list[Plot]
) -> list[str]:
    stages = sorted(set(base) | set(head))
    lines = [
        "<details>",
        f"<summary>Timings ({PERF_DIR}/): seconds per stage, {len(stages)} stages</summary>",
        "",
    ]
    if stages:
        rows = []
        for s in stages:
            sb, sh = base.get(s), head.get(s)
            ratio = f"{sh / sb:.2f}" if sb and sh is not None else "n/a"
            rows.append([s, _num(sb), _num(sh), ratio])
        lines += markdown_table(["stage", "seconds base", "seconds head", "ratio"], rows)
        lines += ["", f"ratio: head / base; base {b.describe()}, head {h.describe()}."]
    else:
        lines.append(f"No {PERF_DIR}/*.json at either revision.")
    if plots:
        lines += ["", "Plots:", "", *_plot_links(plots)]
    return [*lines, "", "</details>"]


def diff_section(title: str, md: str) -> list[str]:
    return [f"## {title}", "", md.strip() if _table_rows(md) else "No change."]


def build(repo: Path, base: Rev, head: Rev, out: Path) -> str:
    revs = [base.arg] + ([head.arg] if head.arg else [])
    params = run_dvc(repo, "params", "diff", *revs, "--md")
    metrics = run_dvc(repo, "metrics", "diff", *revs, "--md")
    drawn, unchanged, errors = render_plots(repo, base, head, out)
    files = {rev.label: Files(repo, rev) for rev in (base, head)}
    fb, fh = files[base.label], files[head.label]
    lines = [
        f"# Pull-request report: `{base.label}` → `{head.label}`",
        "",
        f"- base: {base.describe()}",
        f"- head: {head.describe()}",
        "",
        *diff_section("Params", params),
        "",
        *diff_section("Metrics", metrics),
        "",
        *card_section(dataset_counts(fb), dataset_counts(fh), base, head),
        "",
        "## Plots",
        "",
    ]
    main = [p for p in drawn if not p.id.startswith(f"{PERF_DIR}/")]
    perf = [p for p in drawn if p.id.startswith(f"{PERF_DIR}/")]
    lines.append(
        f"Drawn: the plots whose data differ between base and head ({len(drawn)}; the "
        f"{PERF_DIR}/ ones are under Timings). Unchanged, not drawn ({len(unchanged)}): "
        + (", ".join(f"`{p.id}`" for p in unchanged) or "none")
        + "."
    )
    lines += ["", *(_plot_links(main) or ["No plot changed."])]
    if errors:
        lines += ["", "dvc could not read:", "", *(f"- {e}" for e in errors)]
    lines += ["", *timings_section(perf_seconds(fb), perf_seconds(fh), base, head, perf), ""]
    return "\n".join(lines)


def write_report(start: Path, base: str, head: str | None, out: Path) -> None:
    """Write out/report.md (and out/plots/); on failure write a report that says why, then
    raise PrReportError with one line."""
    out = Path(out).resolve()
    try:
        repo = repo_root(start)
        b = resolve(repo, base, fetch=True)
        h = resolve(repo, head, fetch=True)
        text = build(repo, b, h, out)
    except PrReportError as err:
        io.write_text(
            out / "report.md",
            f"# Pull-request report: no comparison was made\n\n{err}\n\n"
            f"(base `{base}`, head `{head or WORKSPACE}`)\n",
        )
        raise
    io.write_text(out / "report.md", text)
    log.info("wrote %s", out / "report.md")
