"""The project's import graph, read from the source with ast (nothing is imported).

An edge A -> B means module A's code imports project module B: at module level, inside a
function or under TYPE_CHECKING alike. `closure` adds what Python runs besides (the packages
above an imported module) and the modules a registry names as "safeforge.x.y:Class" strings,
since `make_backend` and `judge_class` import those by name: that is the code a stage runs.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("safeforge", "stages")  # safeforge.* under src/, stages.* at the root
REGISTRY_REF = re.compile(r"^(safeforge(?:\.\w+)+)(?::\w+)?$")


@functools.cache
def modules() -> dict[str, Path]:
    """Module name -> file, for safeforge.* and stages.*."""
    found = {}
    for base, package in zip((ROOT / "src", ROOT), PROJECT, strict=True):
        for path in sorted((base / package).rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def _target(name: str) -> str | None:
    """The project module an imported dotted name lands in (a module, or the one defining it)."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@functools.cache
def _parsed(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(encoding="utf-8"))


@functools.cache
def imports(name: str) -> frozenset[str]:
    """Project modules that `name` imports by an import statement, wherever it stands."""
    out = set()
    for node in ast.walk(_parsed(name)):
        if isinstance(node, ast.Import):
            dotted = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if _is_package(name) else name.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            # `from pkg import sub` imports the submodule; `from mod import name`, the module
            dotted = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for d in dotted:
            target = _target(d)
            if target and target != name:
                out.add(target)
    return frozenset(out)


@functools.cache
def imports_in_functions(name: str) -> tuple[str, ...]:
    """file:line of each import of a project module that stands inside a function body."""
    found = []
    for fn in ast.walk(_parsed(name)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import):
                project = any(a.name.startswith(PROJECT) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                project = bool(node.level) or (node.module or "").startswith(PROJECT)
            else:
                continue
            if project:
                found.append(f"{modules()[name].relative_to(ROOT)}:{node.lineno}")
    return tuple(found)


@functools.cache
def registry_refs(name: str) -> frozenset[str]:
    """Modules named by a "safeforge.x.y" or "safeforge.x.y:Class" string (lazy registries)."""
    out = set()
    for node in ast.walk(_parsed(name)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = REGISTRY_REF.match(node.value)
            if m and m.group(1) in modules():
                out.add(m.group(1))
    return frozenset(out)


def _parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))} & set(modules())


def closure(name: str) -> set[str]:
    """Every project module whose code runs (or may run, by registry) when `name` runs."""
    seen, todo = set(), [name]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(imports(mod) | registry_refs(mod) | _parents(mod))
    return seen


def files(names: set[str]) -> set[str]:
    """Repository-relative paths of modules."""
    return {modules()[n].relative_to(ROOT).as_posix() for n in names}


def calls_with_constant(name: str, func: str, keyword: str, position: int) -> set[str]:
    """String constants passed as `keyword=` (or at `position`) to calls of `func`."""
    out = set()
    for node in ast.walk(_parsed(name)):
        if not isinstance(node, ast.Call):
            continue
        called = (
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        )
        if called != func:
            continue
        args = [k.value for k in node.keywords if k.arg == keyword]
        args += node.args[position : position + 1]
        out |= {a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of a directed graph, as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None
