"""One place per default: every tunable lives once, in conf/, and code reads it. Config
dataclasses type their section but give no field a default; backend constructors take every
value from their section; a missing key fails naming the section and the key. A literal default
that repeats a conf value (a parameter named like a conf key, with a value that key takes) fails
too: read it from conf/, or, for an internal constant that is no knob, name a module constant
with a comment."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, conf_option, judge_conf

from safeforge.backends import BACKENDS, make_backend
from safeforge.config import compose
from safeforge.judges.clue import ClueConfig
from safeforge.judges.probe import ProbeConfig
from safeforge.judges.vlm import VlmConfig

SRC = ROOT / "src" / "safeforge"
# parameters of backend constructors that are no conf value, and why
NOT_CONF = {("VLLMBackend", "load"): "a test hook: skip the check that vLLM is installed"}
# the config groups whose options hold knobs (the others hold texts: prompts, taxonomy...)
GROUPS = ("judge", "generator", "describer", "source")
# the config dataclasses known today: the discovery below must find at least these
KNOWN_CONFIGS = {
    "Sampling",
    "ProbeConfig",
    "VlmConfig",
    "ClueConfig",
    "RelevanceConfig",
    "DebiasConfig",
    "FallbackConfig",
    "Scoring",
}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(SRC.rglob("*.py"))]


def _is_dataclass(node: ast.ClassDef) -> bool:
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if isinstance(target, ast.Name) and target.id == "dataclass":
            return True
    return False


def _config_dataclasses() -> list[tuple[Path, ast.ClassDef]]:
    """Dataclasses built from a conf section: named *Config, or with from_params/from_config."""
    found = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef) or not _is_dataclass(node):
                continue
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            if node.name.endswith("Config") or methods & {"from_params", "from_config"}:
                found.append((path, node))
    return found


def test_config_dataclasses_give_no_field_a_default() -> None:
    found = _config_dataclasses()
    assert {node.name for _, node in found} >= KNOWN_CONFIGS
    defaults = [
        f"{path.relative_to(ROOT)}:{stmt.lineno} {node.name}.{stmt.target.id}"
        for path, node in found
        for stmt in node.body
        if isinstance(stmt, ast.AnnAssign)
        and isinstance(stmt.target, ast.Name)
        and stmt.value is not None
        and "ClassVar" not in ast.unparse(stmt.annotation)
    ]
    assert not defaults, f"conf/ holds these values; the dataclass only types them: {defaults}"


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_constructors_take_every_value_from_conf(name: str) -> None:
    module, cls_name = BACKENDS[name].split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    for fn in (cls.__init__, cls.from_params):
        defaulted = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.default is not inspect.Parameter.empty and (cls_name, p.name) not in NOT_CONF
        ]
        assert not defaulted, (
            f"{cls_name}.{fn.__name__}: {defaulted} have defaults; conf/generator/{name}.yaml "
            "holds them"
        )


def _conf_values() -> dict[str, set[tuple[type, Any]]]:
    """Every scalar value each conf key takes, over the default composition and every option
    of each config group."""
    values: dict[str, set[tuple[type, Any]]] = {}

    def walk(value: Any, key: str | None) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif key is not None and value is not None and not isinstance(value, list):
            values.setdefault(key, set()).add((type(value), value))

    overrides = [[]] + [
        [f"{group}={option.stem}"]
        for group in GROUPS
        for option in sorted((ROOT / "conf" / group).glob("*.yaml"))
    ]
    for o in overrides:
        walk(compose(overrides=o), None)
    return values


def _literal(node: ast.expr | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else None
    except (ValueError, TypeError):
        return None  # a name or a call: not a literal


def test_no_literal_default_repeats_a_conf_value() -> None:
    conf = _conf_values()
    repeated = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            pairs: list[tuple[str, ast.expr | None]] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                positional = a.posonlyargs + a.args
                padded = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
                pairs = [(p.arg, d) for p, d in zip(positional, padded, strict=True)]
                pairs += [(p.arg, d) for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)]
            elif isinstance(node, ast.ClassDef):
                pairs = [
                    (s.target.id, s.value)
                    for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                ]
            for name, default in pairs:
                value = _literal(default)
                if value is not None and (type(value), value) in conf.get(name, ()):
                    repeated.append(f"{path.relative_to(ROOT)}:{default.lineno} {name}={value!r}")
    assert not repeated, (
        f"literal defaults equal to a conf value of the same key: {repeated}; read it from "
        "conf/, or name a module constant with a comment if it is internal"
    )


def _without(params: dict[str, Any], *path: str) -> dict[str, Any]:
    *parents, key = path
    section = params
    for p in parents:
        section = section[p]
    del section[key]
    return params


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: ProbeConfig.from_params(_without(judge_conf("probe"), "patience")),
            r"judge \(probe\): missing keys \['patience'\]",
        ),
        (
            lambda: VlmConfig.from_params(_without(judge_conf("vlm"), "max_image_side")),
            r"judge \(vlm\): missing keys \['max_image_side'\]",
        ),
        (
            lambda: ClueConfig.from_params(_without(judge_conf("clue"), "hold_threshold")),
            r"judge \(clue\): missing keys \['hold_threshold'\]",
        ),
        (
            lambda: ClueConfig.from_params(_without(judge_conf("clue"), "debias", "centre_weight")),
            r"judge \(clue\)\.debias: missing keys \['centre_weight'\]",
        ),
        (
            lambda: make_backend(_without(conf_option("generator", "hf"), "sampling", "seed")),
            r"hf backend\.sampling: missing keys \['seed'\]",
        ),
        (
            lambda: make_backend(_without(conf_option("generator", "openai"), "timeout_s")),
            r"openai backend: missing keys \['timeout_s'\]",
        ),
        (
            lambda: make_backend(_without(conf_option("generator", "vllm"), "batch_size")),
            r"vllm backend: missing keys \['batch_size'\]",
        ),
    ],
)
def test_a_missing_key_names_the_section_and_the_key(build, message: str) -> None:
    with pytest.raises(KeyError, match=message):
        build()
