"""Layers import one way, lowest first, and no module imports another in a circle.

The order (README, "Layers"): a package may import only packages in lower layers. Imports of
project modules stand at module level, so the graph below is the code that runs; heavy optional
libraries (torch, transformers, vllm, peft, onnx...) may still load inside functions.
"""

from __future__ import annotations

import import_graph as ig
import pytest

# lowest first; packages in one layer are peers and do not import each other (except the core)
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "safeforge",
        "io",
        "config",
        "labels",
        "cache",
        "cache_sync",
        "validate",
        "metrics",
        "stage",
        "determinism",
        "shippable",
    ),
    ("images", "sources", "benchmarks"),
    ("backends",),
    ("executors",),
    ("chain",),
    ("perception",),
    ("generate",),
    ("embeddings",),
    ("dedup", "quality", "split", "augment"),
    ("judges",),
    ("scoring", "responses", "export"),
    ("report",),
    ("cli", "stages"),
)
CORE = LAYERS[0]
RANK = {pkg: rank for rank, layer in enumerate(LAYERS) for pkg in layer}


def package(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "stages":
        return "stages"
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_package_has_a_layer() -> None:
    unplaced = sorted({package(m) for m in ig.modules()} - set(RANK))
    assert not unplaced, (
        f"add these packages to LAYERS (tests/test_layers.py) and the README: {unplaced}"
    )


def test_imports_go_down_the_layers_only() -> None:
    wrong = []
    for mod in ig.modules():
        for target in ig.imports(mod) | ig.registry_refs(mod):
            a, b = package(mod), package(target)
            if a == b or (a in CORE and b in CORE):
                continue
            if RANK[a] <= RANK[b]:
                wrong.append(f"{mod} -> {target} ({a}: layer {RANK[a]}, {b}: layer {RANK[b]})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(wrong))


def test_no_module_imports_another_in_a_circle() -> None:
    graph = {mod: set(ig.imports(mod)) for mod in ig.modules()}
    cycle = ig.find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_project_imports_stand_at_module_level() -> None:
    inner = [where for mod in ig.modules() for where in ig.imports_in_functions(mod)]
    assert not inner, "imports of project modules inside functions:\n" + "\n".join(inner)


def test_readme_shows_the_layer_order() -> None:
    shown = " -> ".join(", ".join(layer) for layer in LAYERS)
    readme = (ig.ROOT / "README.md").read_text(encoding="utf-8")
    assert shown in " ".join(readme.split()), f"README's architecture section should show: {shown}"


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_find_cycle(graph: dict[str, set[str]], cycle: list[str] | None) -> None:
    assert ig.find_cycle(graph) == cycle


def test_the_graph_sees_registries() -> None:
    # on the real tree: hf's model loading is lazy, yet a stage running make_backend runs hf
    assert "safeforge.backends.hf" in ig.registry_refs("safeforge.backends")
    assert "safeforge.backends.hf" in ig.closure("stages.generate")
    assert "safeforge.backends.openai" not in ig.closure("stages.embed")
