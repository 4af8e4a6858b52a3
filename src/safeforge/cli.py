"""`safeforge` command line: `safeforge params` composes params.yaml from conf/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safeforge import config, io


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
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
