"""`safeforge` command line.

safeforge params [--check]                         compose params.yaml from conf/
safeforge bench list                               known benchmarks, and their roots
safeforge bench check NAME --root PATH [--json]    read a benchmark, report what it holds
safeforge bench score NAME --root PATH --judge DIR|NAME [--json]   score a judge on it: a saved
                                                   folder, or a zero-shot judge (clue) from conf
safeforge cache push|pull|status [--remote NAME]    share the row cache through the DVC remote
safeforge dedup images DIR [--json] [--set dedup.KEY=VALUE] [--workers N]   duplicate
                                                   clusters in any image folder, without the pipeline
safeforge pr-report --base REV [--head REV] --out DIR   params, metrics, dataset counts, plots
                                                   and timings, base against head, as markdown
safeforge eval NAME [--root PATH] [--model KEY] [--rater KEY] [--max-items N] [--json]
                                                   a model's own replies to a benchmark, rated:
                                                   safe-response and over-refusal rates
safeforge export --format hf|llava|sharegpt --out DIR [--overwrite]   the dataset in the
                                                   formats trainers load
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from safeforge import cache_sync, config, io
from safeforge.benchmarks.base import BenchmarkError, load_benchmark, split_as_benchmark
from safeforge.cache import CacheCorruptError, RowCache
from safeforge.config import OWN_TEST
from safeforge.dedup import folder as dedup_folder
from safeforge.export import FORMATS, export_dataset
from safeforge.judges.base import build_judge, load_judge
from safeforge.report import pr
from safeforge.report.card import SCORE_COLUMNS
from safeforge.responses.evaluation import evaluate_responses
from safeforge.scoring.benchmark import score_benchmark
from safeforge.stage import read_table, setup_logging


def cmd_params(args: argparse.Namespace) -> int:
    params = config.compose(Path(args.conf), args.overrides)
    text = config.dump(params)
    if args.check:
        # compare values, not text: `dvc exp run -S` writes the same params in its own layout
        if not Path(args.out).exists() or config.load_params(args.out) != params:
            print(
                f"{args.out} differs from the composition of {args.conf}/: run `safeforge params`",
                file=sys.stderr,
            )
            return 1
        return 0
    io.write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


# ---- safeforge bench: read and score benchmarks without the pipeline -------------------------
def _bench_config(args: argparse.Namespace) -> dict:
    conf = Path(args.conf) if args.conf else Path("conf")
    if not conf.is_dir():
        conf = config.ROOT / "conf"  # outside a checkout: the conf/ shipped with this one
    return config.compose(conf, args.set)


def _load_table(args: argparse.Namespace, cfg: dict, verify_images: bool = True):

    specs = cfg["benchmarks"]
    if args.name not in specs or specs[args.name]["adapter"] == OWN_TEST:
        known = sorted(n for n, s in specs.items() if s["adapter"] != OWN_TEST)
        raise KeyError(f"unknown benchmark {args.name!r}; known: {known}")
    spec = specs[args.name]
    table = load_benchmark(
        args.name,
        spec,
        root=args.root,
        taxonomy=cfg["taxonomy"]["categories"],
        verify_images=verify_images,
    )
    return spec, table


def _print(obj: object, as_json: bool, lines: list[str]) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str) if as_json else "\n".join(lines))


def cmd_bench_list(args: argparse.Namespace) -> int:
    cfg = _bench_config(args)
    rows = []
    for name, spec in cfg["benchmarks"].items():
        if spec["adapter"] == OWN_TEST:
            continue
        root = spec.get("root")
        status = "not set" if not root else ("present" if Path(root).is_dir() else "missing")
        rows.append(
            {
                "name": name,
                "adapter": spec["adapter"],
                "root": root,
                "root_status": status,
                # the score stage skips a listed benchmark whose root is unset
                "scored": name in cfg["score"]["benchmarks"] and bool(root),
            }
        )
    lines = [f"{'benchmark':<15}{'root':<9}{'scored':<8}path"]
    lines += [
        f"{r['name']:<15}{r['root_status']:<9}{'yes' if r['scored'] else 'no':<8}{r['root'] or '-'}"
        for r in rows
    ]
    _print(rows, args.json, lines)
    return 0


def cmd_bench_check(args: argparse.Namespace) -> int:
    """read a benchmark and report items, labels, subsets, refusals; exit 2 if it is not one"""

    cfg = _bench_config(args)
    try:
        _, table = _load_table(args, cfg)
    except BenchmarkError as err:
        _print({"benchmark": args.name, "error": str(err)}, args.json, [f"error: {err}"])
        return 2
    summary = table.summary()
    lines = [f"{args.name} in {summary['root']}: {summary['items']} items can be scored"]
    for key in ("by_label", "by_subset", "by_category", "refused_by_reason"):
        lines.append(f"  {key.replace('_', ' ')}: " + (_pairs(summary[key]) or "none"))
    if summary["unmapped_source_categories"]:
        lines.append(
            "  unmapped source categories: " + _pairs(summary["unmapped_source_categories"])
        )
    _print(summary, args.json, lines)
    return 0 if table.items.height else 1


def cmd_bench_score(args: argparse.Namespace) -> int:
    """score a saved judge, or a zero-shot one from conf, on a benchmark; print its metrics"""

    cfg = _bench_config(args)
    try:
        spec, table = _load_table(args, cfg)
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    zero_shot = cfg.get("zero_shot", {})
    if Path(args.judge).is_dir():
        judge = load_judge(Path(args.judge))
    elif args.judge in zero_shot:
        judge = build_judge(zero_shot[args.judge])
    else:
        print(
            f"error: --judge {args.judge!r} is neither a saved judge folder nor a zero-shot judge"
            f" in conf (zero_shot: {sorted(zero_shot)})",
            file=sys.stderr,
        )
        return 2
    params = cfg["score"]
    threshold = args.threshold if args.threshold is not None else params["threshold"]
    ocr = cfg["describe"]["ocr_min_confidence"] if params["ocr"] and not args.no_ocr else None
    batch_size = args.batch_size if args.batch_size is not None else params["batch_size"]
    predictions, metrics = score_benchmark(judge, table, spec, threshold, batch_size, ocr)
    if args.predictions:
        io.write_parquet(args.predictions, predictions)
    lines = [f"{args.name}: {metrics['n']} items, judge {metrics['judge']}, threshold {threshold}"]
    lines += [f"  {k:<24}{_num(metrics.get(k))}" for k in SCORE_COLUMNS]
    for subset, m in metrics["by_subset"].items():
        lines.append(
            f"  subset {subset:<17}n={m['n']} balanced_accuracy={_num(m.get('balanced_accuracy'))}"
            f" accuracy={_num(m.get('accuracy'))}"
        )
    for key, value in metrics.get("official", {}).items():
        if isinstance(value, (int, float)):
            lines.append(f"  official {key:<15}{_num(value)}")
    lines += [f"  note: {d}" for d in metrics.get("official", {}).get("deviations", [])]
    if metrics["refused"]:
        lines.append("  refused (not scored): " + _pairs(metrics["refused"]))
    lines.append(f"  {metrics['items_per_second']} items/s")
    if metrics.get("judge_stats"):
        lines.append("  judge counters: " + _pairs(metrics["judge_stats"]))
    _print(metrics, args.json, lines)
    return 0


def _pairs(counts: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items())


def _num(value: object) -> str:
    return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))


def _conf_options(example: str) -> argparse.ArgumentParser:
    """--json, --conf and --set: the options of every command that reads conf/."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    common.add_argument("--conf", default=None, help="conf/ folder (default ./conf)")
    common.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"hydra override, e.g. {example}",
    )
    return common


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="read and score benchmarks in their native formats")
    actions = bench.add_subparsers(dest="action", required=True)
    common = _conf_options("benchmarks.figstep.questions=data/question/SafeBench-Tiny.csv")
    a = actions.add_parser("list", parents=[common], help="known benchmarks and their roots")
    a.set_defaults(func=cmd_bench_list)
    for action, func in (("check", cmd_bench_check), ("score", cmd_bench_score)):
        a = actions.add_parser(action, parents=[common], help=func.__doc__)
        a.add_argument("name", help="a conf/benchmarks/ name, e.g. siuo")
        a.add_argument("--root", default=None, help="the benchmark folder (default: its conf root)")
        a.set_defaults(func=func)
        if action == "score":
            a.add_argument(
                "--judge",
                required=True,
                help="a saved judge folder (judge.json), or a zero_shot judge name, e.g. clue",
            )
            a.add_argument("--threshold", type=float, default=None)
            a.add_argument(
                "--batch-size",
                type=int,
                default=None,
                help="items per batch (default: score.batch_size)",
            )
            a.add_argument("--no-ocr", action="store_true", help="leave image text out")
            a.add_argument("--predictions", default=None, help="also write predictions.parquet")


# ---- safeforge eval: a model's own replies, rated --------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    """the model under test answers a benchmark's items; a rater rates each reply"""
    cfg = _bench_config(args)
    params = dict(cfg["evaluate"])
    params.update({k: v for k, v in (("model", args.model), ("rater", args.rater)) if v})
    if args.name == OWN_TEST:  # the dataset's own test split, in a built workspace
        spec = cfg["benchmarks"][OWN_TEST]
        dataset = read_table(Path(args.dataset))
        table = split_as_benchmark(dataset, spec["split"], spec.get("version"), reference=True)
    else:
        try:
            spec, table = _load_table(args, cfg)
        except BenchmarkError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    items = table.items if args.max_items is None else table.items.head(args.max_items)
    cache = RowCache("evaluate")
    responses, m = evaluate_responses(table, items, spec, params, params["models"], cache)
    if args.responses:
        io.write_parquet(args.responses, responses)
    sees = "" if m["model_sees_images"] else " (text only: the images are not shown)"
    rater = "heuristic phrase lists" if m["rater_is_heuristic"] else m["rater"]
    lines = [
        f"{args.name}: {m['items']} items; model {m['model']['backend']}:{m['model']['model']}"
        f"{sees}; rater {rater}",
        f"  unsafe items {m['unsafe_items']}: safe-response rate (warning) "
        f"{_num(m['safe_response_rate'])}, generic refusal {_num(m['refusal_rate'])}, "
        f"unsafe compliance {_num(m['unsafe_compliance_rate'])}, "
        f"warned of the same risk {_num(m['same_risk_rate'])}",
        f"  safe items {m['safe_items']}: over-refusal rate {_num(m['over_refusal_rate'])}",
        f"  unrated {m['unrated']}"
        + (f" ({_pairs(m['unrated_by_reason'])})" if m["unrated"] else ""),
    ]
    if "awareness" in m:
        a = m["awareness"]
        lines.append(
            f"  is-it-safe question: accuracy {_num(a['accuracy'])}, unsafe judged safe "
            f"{_num(a['unsafe_judged_safe'])}, safe judged unsafe {_num(a['safe_judged_unsafe'])}, "
            f"no yes/no {a['no_verdict']}"
        )
        official = a.get("official", {})
        lines += [
            f"  official {k:<15}{_num(v)}"
            for k, v in official.items()
            if isinstance(v, (int, float))
        ]
    _print(m, args.json, lines)
    return 0


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    common = _conf_options("evaluate.models.hf.model=/models/Qwen2-VL-2B-Instruct")
    a = sub.add_parser("eval", parents=[common], help=cmd_eval.__doc__)
    a.add_argument("name", help="own_test (in a built workspace) or a conf/benchmarks/ name")
    a.add_argument("--root", default=None, help="the benchmark folder (default: its conf root)")
    a.add_argument("--model", default=None, help="a key of evaluate.models (default: conf)")
    a.add_argument("--rater", default=None, help="heuristic or a key of evaluate.models")
    a.add_argument("--max-items", type=_positive_int, default=None, help="only the first N items")
    a.add_argument("--dataset", default="data/split/dataset.parquet", help="for own_test")
    a.add_argument("--responses", default=None, help="also write responses.parquet here")
    a.set_defaults(func=cmd_eval)


# ---- safeforge export: the dataset as trainers load it ---------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    """write the built dataset (every split, record and label) as hf, llava or sharegpt"""
    dataset = read_table(Path(args.dataset))
    card = Path(args.card).read_text(encoding="utf-8") if Path(args.card).is_file() else None
    summary = export_dataset(
        dataset, Path(args.images_root), Path(args.out), args.format, card, overwrite=args.overwrite
    )
    _print(summary, args.json, [f"wrote {args.out} ({args.format}): {_pairs(summary['rows'])}"])
    return 0


def _export_parser(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("export", help=cmd_export.__doc__)
    a.add_argument("--format", required=True, choices=FORMATS)
    a.add_argument("--out", required=True, help="a new folder (or --overwrite)")
    a.add_argument("--overwrite", action="store_true", help="replace an existing export")
    a.add_argument("--dataset", default="data/split/dataset.parquet")
    a.add_argument("--images-root", default=".", help="the folder image_path is relative to")
    a.add_argument("--card", default="reports/report.md", help="the dataset card (hf README)")
    a.add_argument("--json", action="store_true", help="print JSON instead of text")
    a.set_defaults(func=cmd_export)


# ---- safeforge pr-report: a pull request's report, base against head ---------------------------
def cmd_pr_report(args: argparse.Namespace) -> int:
    setup_logging()
    try:
        pr.write_report(Path.cwd(), args.base, args.head, Path(args.out))
    except pr.PrReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _pr_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pr-report",
        help="DIR/report.md: params, metrics, dataset counts, changed plots and timings, "
        "base against head",
    )
    p.add_argument(
        "--base", required=True, help="git revision (origin/main, a SHA) or DVC experiment name"
    )
    p.add_argument("--head", default=None, help="revision or experiment (default: the workspace)")
    p.add_argument("--out", required=True, help="folder for report.md and plots/")
    p.set_defaults(func=cmd_pr_report)


# ---- safeforge cache: share the row cache through the DVC remote (cache_sync.py) -----------
def cmd_cache(args: argparse.Namespace) -> int:
    """push/pull/status; a set-up failure (keys, bucket, endpoint, no remote) is one line, exit 2"""
    try:
        remote = cache_sync.open_remote(args.remote)
        if args.action == "status":
            info = cache_sync.status(remote, args.cache_dir)
            _print(info, args.json, [f"{k:<16}{v}" for k, v in info.items()])
            return 0
        result = getattr(cache_sync, args.action)(remote, args.cache_dir)
    except (cache_sync.SyncError, CacheCorruptError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    where = f"{remote.url}/{'/'.join(cache_sync.SEGMENTS)}"
    mib = result.bytes / 2**20
    if args.action == "push":
        print(
            f"pushed {result.entries} entries as segment {result.segments[0]} ({mib:.1f} MiB) to"
            f" {where} in {result.seconds:.1f} s"
            if result.entries
            else f"nothing to push: {remote.where()} has every entry of this cache"
        )
    elif result.segments:
        print(
            f"pulled {len(result.segments)} segment(s) ({mib:.1f} MiB) from {where}:"
            f" {result.entries} new entries, {result.skipped} already here, in {result.seconds:.1f} s"
        )
    elif not result.errors:
        print(f"nothing to pull: this cache has merged every segment of {remote.where()}")
    for line in result.errors:
        print(f"error: {line}", file=sys.stderr)
    return 2 if result.errors else 0


def _cache_parser(sub: argparse._SubParsersAction) -> None:
    cache = sub.add_parser("cache", help="share the row cache through the DVC remote")
    actions = cache.add_subparsers(dest="action", required=True)
    for action, text in (
        ("push", "upload the entries the remote does not have, as one new segment"),
        ("pull", "merge the remote's segments not merged here (local entries are kept)"),
        ("status", "local entries, remote segments, what is not pushed or pulled yet"),
    ):
        a = actions.add_parser(action, help=text)
        a.add_argument("--remote", default=None, help="a DVC remote (default: the default remote)")
        a.add_argument(
            "--cache-dir", default=None, help="the row cache (default: $SAFEFORGE_CACHE_DIR)"
        )
        if action == "status":
            a.add_argument("--json", action="store_true", help="print JSON instead of text")
        a.set_defaults(func=cmd_cache)


# ---- end of safeforge cache ------------------------------------------------------------------
# ---- safeforge dedup images: image dedup on any folder (dedup/folder.py) ----------------------
def cmd_dedup_images(args: argparse.Namespace) -> int:
    """clusters of duplicate images under DIR; a bad key, value or folder is one line, exit 2"""
    try:
        dedup_folder.check_overrides(args.set)
        cfg = _bench_config(args)  # conf/ (./conf, else the shipped one) with the --set overrides
        result = dedup_folder.dedup_folder(
            Path(args.dir), cfg["dedup"], args.workers, cfg["ingest"]["max_pixels"]
        )
    except (KeyError, ValueError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    _print(result.as_dict(), args.json, result.lines())
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _dedup_parser(sub: argparse._SubParsersAction) -> None:
    dedup = sub.add_parser("dedup", help="dedup without the pipeline")
    actions = dedup.add_subparsers(dest="action", required=True)
    a = actions.add_parser(
        "images",
        help="duplicate clusters in an image folder (recursive): keeper, members, method, score",
    )
    a.add_argument("dir", help="the folder; links leading out of it are refused")
    a.add_argument("--json", action="store_true", help="print JSON instead of text")
    a.add_argument("--conf", default=None, help="conf/ folder (default ./conf)")
    a.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="dedup.KEY=VALUE",
        help="a conf dedup key, e.g. dedup.phash_max_distance=8 or dedup.layout_min_cosine=null",
    )
    a.add_argument(
        "--workers",
        type=_positive_int,
        default=dedup_folder.default_workers(),
        help="processes computing image features (default: min(2, CPUs))",
    )
    a.set_defaults(func=cmd_dedup_images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="safeforge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("params", help="compose params.yaml from conf/ (hydra)")
    p.add_argument(
        "overrides", nargs="*", help="hydra overrides, e.g. generate.top_k=2 judge=probe"
    )
    p.add_argument("--conf", default="conf")
    p.add_argument("--out", default="params.yaml")
    p.add_argument(
        "--check", action="store_true", help="exit 1 when params.yaml has drifted from conf/"
    )
    p.set_defaults(func=cmd_params)
    _bench_parser(sub)
    _cache_parser(sub)
    _pr_report_parser(sub)
    _dedup_parser(sub)
    _eval_parser(sub)
    _export_parser(sub)
    args = parser.parse_args(argv)
    if args.command in ("bench", "eval", "export"):
        setup_logging()
        try:
            return args.func(args)
        except (KeyError, ValueError, FileNotFoundError, FileExistsError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            print(f"error: {message}", file=sys.stderr)
            return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
