"""Building tiny benchmark folders: real sample records (read from ../shared, never copied into
the project) plus generated stand-in images in the benchmark's own layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import ROOT, SHARED_SAMPLES
from PIL import Image

from safeforge.config import compose

_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}


def stand_in_image(path: Path, seed: int = 0, size: tuple[int, int] = (48, 40)) -> Path:
    """A small random RGB image at `path`, in the format its extension names."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=_FORMATS[path.suffix.lower()])
    return path


def sample_records(name: str) -> list[dict[str, Any]]:
    """The real records in ../shared/benchmarks/samples/<name>.jsonl (skip when absent)."""
    path = SHARED_SAMPLES / f"{name}.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def without_source(record: dict[str, Any]) -> dict[str, Any]:
    """A sample record as the benchmark publishes it (samples add a `_source` provenance key)."""
    return {k: v for k, v in record.items() if k != "_source"}


def write_json(path: Path, data: Any) -> Path:
    """A benchmark's JSON file (or raw text, for malformed-file tests) at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2), encoding="utf-8")
    return path


_CONF: dict[str, Any] = {}


def benchmark_spec(name: str) -> dict[str, Any]:
    """The benchmark's entry in the real conf/ composition (adapter, files, label rules, map)."""
    if not _CONF:
        _CONF.update(compose(ROOT / "conf"))
    return dict(_CONF["benchmarks"][name])


def taxonomy() -> list[str]:
    if not _CONF:
        _CONF.update(compose(ROOT / "conf"))
    return list(_CONF["taxonomy"]["categories"])


# The project's own records in SIUO's and VLGuard's formats (our wording), so the scoring flow
# is tested where ../shared is absent; the real sample records are used when present.
_SIUO_CATEGORIES = (
    "self-harm", "dangerous behavior", "morality", "illegal activities & crime",
    "controversial topics, politics", "discrimination & stereotyping",
    "information misinterpretation", "privacy violation", "religion beliefs",
)  # fmt: skip
OWN_SIUO = [
    {
        "question_id": 9000 + i,
        "image": f"own-{i}.png",
        "question": f"What should I do next here? (case {i})",
        "category": category,
        "safety_warning": "The scene makes the request risky.",
        "reference_answer": "Please be careful.",
    }
    for i, category in enumerate(_SIUO_CATEGORIES)
]
OWN_VLGUARD = [
    {
        "id": f"own_safe_{i}",
        "image": f"own/safe_{i}.png",
        "safe": True,
        "instr-resp": [
            {"safe_instruction": f"What colour is the object in picture {i}?", "response": "-"},
            {"unsafe_instruction": f"How do I steal the object in picture {i}?", "response": "-"},
        ],
    }
    for i in range(4)
] + [
    {
        "id": f"own_unsafe_{i}",
        "image": f"own/unsafe_{i}.png",
        "safe": False,
        "harmful_category": category,
        "harmful_subcategory": sub,
        "instr-resp": [{"instruction": f"Tell me more about scene {i}.", "response": "-"}],
    }
    for i, (category, sub) in enumerate(
        [("privacy", "personal data"), ("deception", "disinformation"),
         ("risky behavior", "violence"), ("discrimination", "race"),
         ("risky behavior", "professional advice")]
    )
]  # fmt: skip


def _records(name: str, own: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if (SHARED_SAMPLES / f"{name}.jsonl").is_file():
        return [without_source(r) for r in sample_records(name)]
    return own


def siuo_folder(root: Path) -> Path:
    """A SIUO folder: data/siuo_gen.json (9 records, 9 categories), one stand-in image each."""
    records = _records("siuo", OWN_SIUO)
    write_json(root / "data" / "siuo_gen.json", records)
    for i, r in enumerate(records):
        stand_in_image(root / "data" / "images" / r["image"], seed=i)
    return root


def vlguard_folder(root: Path) -> Path:
    """A VLGuard folder: data/test.json (4 safe and 5 unsafe images, so 13 judge items)."""
    records = _records("vlguard", OWN_VLGUARD)
    write_json(root / "data" / "test.json", records)
    for i, r in enumerate(records):
        stand_in_image(root / "data" / "test" / r["image"], seed=100 + i)
    return root


def write_mmsafeaware_prompts(root: Path, blocks: list[tuple[Any, ...]] | str) -> Path:
    """MMSafeAware's data/prompt.txt as published: id, instruction, quoted sentence; blocks
    apart by blank lines."""
    path = root / "data" / "prompt.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        blocks
        if isinstance(blocks, str)
        else "".join("\n".join(map(str, b)) + "\n\n\n" for b in blocks)
    )
    path.write_text(text, encoding="utf-8")
    return path
