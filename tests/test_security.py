"""Security rules that hold for every line of the project's code, checked on its syntax trees:
no unpickling, safe YAML only, and remote code off unless a param turns it on.

(What runs is checked elsewhere: API keys never reach a file, a commit, a log or the row cache
in test_dag_experiments.py; paths stay inside a benchmark root in tests/benchmarks/ and inside
the source folder in tests/images/.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

CODE = sorted(
    p
    for folder in ("src", "stages", "benchmarks")
    for p in (ROOT / folder).rglob("*.py")
    if "egg-info" not in str(p)
)
# calls that unpickle (or may): module.function as written in the code
UNPICKLING = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("cPickle", "load"),
    ("dill", "load"),
    ("joblib", "load"),
    ("pd", "read_pickle"),
    ("pandas", "read_pickle"),
    ("shelve", "open"),
}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "full_load", "unsafe_load_all", "full_load_all"}


def calls(path: Path) -> list[tuple[str, str, ast.Call]]:
    """(receiver, attribute, node) for every `x.attr(...)` call in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            name = receiver.id if isinstance(receiver, ast.Name) else ast.unparse(receiver)
            out.append((name, node.func.attr, node))
    return out


def keyword(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{node.lineno}"


def unpickling(paths: list[Path]) -> list[str]:
    """Every place in `paths` that imports a pickle module or calls a loader that unpickles."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = {a.name for a in node.names} | {getattr(node, "module", None) or ""}
                if {"pickle", "cPickle", "dill", "shelve"} & names:
                    found.append(f"{where(path, node)} imports a pickle module")
        for receiver, attr, node in calls(path):
            if (receiver, attr) in UNPICKLING:
                found.append(f"{where(path, node)}: {receiver}.{attr}")
            if attr == "load" and receiver in ("np", "numpy"):
                allow = keyword(node, "allow_pickle")
                if allow is not None and not (isinstance(allow, ast.Constant) and not allow.value):
                    found.append(f"{where(path, node)}: np.load with allow_pickle")
            if attr == "load" and receiver == "torch":
                weights_only = keyword(node, "weights_only")
                if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                    found.append(f"{where(path, node)}: torch.load without weights_only=True")
    return found


def test_there_is_code_to_check():
    assert len(CODE) > 50


def test_nothing_unpickles():
    assert not unpickling(CODE)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("import pickle\n", "imports a pickle module"),
        ("import torch\ntorch.load('m.pt')\n", "torch.load without weights_only=True"),
        ("import numpy as np\nnp.load('a.npy', allow_pickle=True)\n", "allow_pickle"),
        ("import pandas as pd\npd.read_pickle('x')\n", "pd.read_pickle"),
    ],
)
def test_the_pickle_check_catches_what_it_forbids(tmp_path, source, problem):
    bad = tmp_path / "bad.py"
    bad.write_text(source)
    assert [f for f in unpickling([bad]) if problem in f]
    safe = tmp_path / "safe.py"
    safe.write_text("import torch\ntorch.load('m.pt', weights_only=True)\n")
    assert not unpickling([safe])


def test_yaml_is_read_safely():
    found = [
        f"{where(path, node)}: yaml.{attr}"
        for path in CODE
        for receiver, attr, node in calls(path)
        if receiver == "yaml" and attr in UNSAFE_YAML
    ]
    assert not found, "use yaml.safe_load: " + ", ".join(found)


def test_remote_code_is_off_unless_a_param_turns_it_on():
    """Every `trust_remote_code=` the code passes is False or a config value, never True, and
    every conf/ file that has the param ships it off."""
    passed = []
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            values = []  # a keyword argument, or a dict of kwargs to spread
            if isinstance(node, ast.Call) and (value := keyword(node, "trust_remote_code")):
                values.append(value)
            if isinstance(node, ast.Dict):
                values += [
                    v
                    for k, v in zip(node.keys, node.values, strict=True)
                    if isinstance(k, ast.Constant) and k.value == "trust_remote_code"
                ]
            for value in values:
                passed.append(path)
                if isinstance(value, ast.Constant):
                    assert value.value is False, where(path, node)
    assert passed, "no model loader passes trust_remote_code at all: say it, off"
    confs = [p for p in (ROOT / "conf").rglob("*.yaml") if "trust_remote_code" in p.read_text()]
    assert confs
    for conf in confs:
        assert yaml.safe_load(conf.read_text())["trust_remote_code"] is False, conf
