"""Each stage's dvc.yaml deps are exactly the code it runs, the suites it validates against and
the conf files it reads outside params: a missed dep leaves a stale output, an extra one reruns
work for nothing.

The code a stage runs is the closure of `stages.<name>` in the import graph (import_graph.py):
module-level imports, imports inside functions, the packages above them and the modules the
backend and judge registries name. dvc.yaml lists those files one by one.
"""

from __future__ import annotations

from pathlib import Path

import import_graph as ig
import pytest
import yaml
from helpers import make_repo_copy, run_cmd

DVC_YAML = yaml.safe_load((ig.ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
SUITES = {p.stem for p in (ig.ROOT / "schemas").glob("*.json")}


def stage_deps(name: str) -> list[str]:
    body = DVC_YAML[name].get("do", DVC_YAML[name])
    return list(body["deps"])


def expand(deps: list[str], prefix: str) -> set[str]:
    """The files under `prefix` that the deps name (a folder stands for every file in it)."""
    out = set()
    for dep in deps:
        if not dep.startswith(prefix):
            continue
        path = ig.ROOT / dep
        out |= (
            {p.relative_to(ig.ROOT).as_posix() for p in path.rglob("*") if p.is_file()}
            if path.is_dir()
            else {dep}
        )
    return {p for p in out if "__pycache__" not in p}


def code_of(name: str) -> set[str]:
    return ig.files(ig.closure(f"stages.{name}"))


def suites_of(name: str) -> set[str]:
    found = set()
    for mod in ig.closure(f"stages.{name}"):
        found |= ig.calls_with_constant(mod, "write_table", "suite", 2)
        found |= ig.calls_with_constant(mod, "validate", "suite", 1)
    unknown = found - SUITES
    assert not unknown, f"{name}: suites without a schemas/ file: {unknown}"
    return {f"schemas/{s}.json" for s in found}


def conf_of(name: str) -> set[str]:
    """conf/ groups read as files (resolve_conf), outside the params DVC tracks."""
    groups = set()
    for mod in ig.closure(f"stages.{name}"):
        groups |= ig.calls_with_constant(mod, "resolve_conf", "group", 1)
    return {f"conf/{g}" for g in groups}


def mismatch(name: str, kind: str, listed: set[str], needed: set[str]) -> str:
    missing, extra = sorted(needed - listed), sorted(listed - needed)
    return f"stage {name}: {kind} deps differ; add {missing}, remove {extra}"


@pytest.mark.parametrize("name", list(DVC_YAML))
def test_code_deps_are_the_stage_import_closure(name: str) -> None:
    listed = expand(stage_deps(name), "src/") | expand(stage_deps(name), "stages/")
    needed = code_of(name)
    assert listed == needed, mismatch(name, "code", listed, needed)


@pytest.mark.parametrize("name", list(DVC_YAML))
def test_schema_deps_are_the_suites_the_stage_validates_against(name: str) -> None:
    listed = expand(stage_deps(name), "schemas/")
    needed = suites_of(name)
    assert listed == needed, mismatch(name, "schema", listed, needed)


@pytest.mark.parametrize("name", list(DVC_YAML))
def test_conf_deps_are_the_conf_files_read_outside_params(name: str) -> None:
    listed = {d for d in stage_deps(name) if d.startswith("conf/")}
    needed = conf_of(name)
    assert listed == needed, mismatch(name, "conf", listed, needed)


def test_an_openai_backend_change_does_not_rerun_embed() -> None:
    assert "src/safeforge/backends/openai.py" not in code_of("embed")
    assert "src/safeforge/backends/openai.py" in code_of("generate")
    assert "src/safeforge/images/phash.py" in code_of("embed")  # pHash is computed there


def code_only_pipeline(repo_dir: Path) -> None:
    """Keep each stage's code, schema and conf deps and nothing else (no data, no outputs,
    `true` for a command), so `dvc repro` records their hashes in a second."""
    path = repo_dir / "dvc.yaml"
    dag = yaml.safe_load(path.read_text(encoding="utf-8"))
    for stage in dag["stages"].values():
        body = stage.get("do", stage)
        body["deps"] = [
            d for d in body["deps"] if d.startswith(("src/", "stages/", "schemas/", "conf/"))
        ]
        body["cmd"] = "true"
        for key in ("outs", "metrics", "plots", "params"):
            body.pop(key, None)
    dag.pop("plots", None)
    path.write_text(yaml.safe_dump(dag), encoding="utf-8")
    (repo_dir / "dvc.lock").unlink(missing_ok=True)


def flagged_stages(status: dict, rel: str) -> set[str]:
    """dvc.yaml stages whose changed deps include `rel` (a dep may be its folder)."""
    out = set()
    for key, changes in status.items():
        stage = key.rsplit(":", 1)[-1].split("@")[0]
        for change in changes:
            deps = change.get("changed deps", {}) if isinstance(change, dict) else {}
            if any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps):
                out.add(stage)
    return out


@pytest.mark.slow
def test_touching_any_module_flags_exactly_the_stages_that_run_it(tmp_path: Path) -> None:
    """A real DVC repo with dvc.yaml's deps: append a comment to each module in turn and ask
    `dvc status` which stages changed."""
    from dvc.repo import Repo

    repo_dir = make_repo_copy(tmp_path / "repo")
    code_only_pipeline(repo_dir)
    run_cmd(["dvc", "repro", "-q"], cwd=repo_dir)
    closures = {name: code_of(name) for name in DVC_YAML}
    wrong = []
    with Repo(str(repo_dir)) as repo:
        assert repo.status() == {}, "a fresh build must be up to date"
        for rel in sorted(ig.files(set(ig.modules()))):
            path = repo_dir / rel
            original = path.read_bytes()
            path.write_bytes(original + b"\n# touched\n")
            try:
                flagged = flagged_stages(repo.status(), rel)
            finally:
                path.write_bytes(original)
            expected = {name for name, files in closures.items() if rel in files}
            if flagged != expected:
                wrong.append(
                    f"{rel}: dvc status flags {sorted(flagged)}, runs in {sorted(expected)}"
                )
    assert not wrong, "\n".join(wrong)
