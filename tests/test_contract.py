"""The stage contract: conf/ and params.yaml agree; each stage's declared params are the ones
dvc.yaml lists; every stage of the DAG exists as a module with its docstring."""

from __future__ import annotations

import importlib
import re

import pytest
import yaml
from helpers import ROOT

from safeforge import config
from safeforge.config import stage_params
from safeforge.report.card import STAGES

DAG = [*STAGES, "score", "evaluate", "report"]


def dvc_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_params_yaml_is_the_composition_of_conf():
    composed = config.compose(ROOT / "conf")
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert committed == composed, "params.yaml drifted from conf/: run `safeforge params`"


def test_every_dag_stage_is_in_dvc_yaml_in_order():
    assert list(dvc_stages()) == DAG


def test_each_stage_lists_exactly_the_params_it_declares():
    for name, stage in dvc_stages().items():
        module = importlib.import_module(f"stages.{name}")
        body = stage.get("do", stage)
        assert list(body.get("params", [])) == list(module.PARAMS), name
        assert f"python -m stages.{name}" in body["cmd"]
        doc = module.__doc__ or ""
        assert "Inputs:" in doc and "Outputs:" in doc and "Params:" in doc, name
        declared = doc.split("Params:")[1].split("\n")[0].replace(",", " ").split()
        assert declared == list(module.PARAMS), f"{name}: docstring says {declared}"


def test_stage_params_hands_out_only_declared_sections(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("a: {x: 1}\nb: {y: 2}\n")
    got = stage_params(["a"], path)
    assert list(got) == ["a"] and got["a"]["x"] == 1
    try:
        got["a"]["missing"]
    except KeyError as err:
        assert "a.missing" in str(err) and "x" in str(err)
    else:
        raise AssertionError("a missing key must fail naming it")


def test_params_check_command_detects_drift(tmp_path):
    from safeforge.cli import main

    out = tmp_path / "params.yaml"
    assert main(["params", "--conf", str(ROOT / "conf"), "--out", str(out)]) == 0
    assert main(["params", "--check", "--conf", str(ROOT / "conf"), "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("top_k: 3", "top_k: 4"))
    assert main(["params", "--check", "--conf", str(ROOT / "conf"), "--out", str(out)]) == 1


def test_stage_params_resolves_dotted_foreach_sections(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("score: {t: 1}\nbenchmarks: {siuo: {root: /x}, salad: {root: /y}}\n")
    got = stage_params(["score", "benchmarks.${item}"], path, item="siuo")
    assert got == {"score": {"t": 1}, "benchmarks.siuo": {"root": "/x"}}
    with pytest.raises(KeyError, match=r"benchmarks\.vlguard"):
        stage_params(["benchmarks.${item}"], path, item="vlguard")


def test_each_stage_declares_its_perf_file_as_an_uncached_plot():
    """StageAccounting writes perf/<stage>.json on every run. DVC must know it (kept in git,
    cache: false), as a plot: as a metric it would be noise in `dvc metrics diff`, and as a
    plain uncached out it would switch DVC's run cache off for the stage (dvc/stage/__init__.py:
    only metrics and plots may skip the cache), so `dvc exp run` would recompute what it could
    restore."""

    def entries(items: list) -> dict:
        return {k: v for o in items for k, v in (o.items() if isinstance(o, dict) else [(o, {})])}

    for name, stage in dvc_stages().items():
        body = stage.get("do", stage)
        perf = f"perf/{name}/${{item}}.json" if "foreach" in stage else f"perf/{name}.json"
        assert entries(body.get("plots", [])).get(perf) == {"cache": False}, name
        for kind in ("outs", "metrics"):
            assert not [p for p in entries(body.get(kind, [])) if p.startswith("perf/")], name


def test_every_test_the_readme_guarantees_name_exists():
    """README "Guarantees" names the test behind each promise: each file and test must exist,
    or the promise stands on nothing."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", section)
    assert len(named) >= 10
    for path, test in named:
        assert (ROOT / path).is_file(), path
        if test:
            assert f"def {test}(" in (ROOT / path).read_text(), f"{path}::{test}"


def test_stage_params_interpolates_a_params_value_as_dvc_does(tmp_path):
    """evaluate's params name the models its own params choose: evaluate.models.${evaluate.model}"""
    path = tmp_path / "params.yaml"
    path.write_text("evaluate: {model: hf, models: {hf: {a: 1}, openai: {a: 2}}, bad: {x: 1}}\n")
    got = stage_params(["evaluate.models.${evaluate.model}"], path)
    assert got == {"evaluate.models.hf": {"a": 1}}
    with pytest.raises(KeyError, match=r"evaluate\.rater"):
        stage_params(["evaluate.models.${evaluate.rater}"], path)
    with pytest.raises(KeyError, match="not a name"):
        stage_params(["evaluate.models.${evaluate.bad}"], path)
