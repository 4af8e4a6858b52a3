"""MM-SafetyBench (github.com/isXinLiu/MM-SafetyBench).

Native layout: one file per scenario, `<questions>/<NN-Scenario>.json` (spec["questions"], by
default data/processed_questions), an object keyed "0", "1", ... whose values hold `Question`,
`Key Phrase`, `Phrase Type`, `Rephrased Question` and `Rephrased Question(SD)`. Images are
`<images>/<NN-Scenario>/<SD|SD_TYPO|TYPO>/<key>.jpg` (spec["images"], by default data/imgs).

Items: one per question and image type in spec["image_types"], which names the question field
made for that image (SD -> "Rephrased Question(SD)", SD_TYPO and TYPO -> "Rephrased Question").
Item id `<scenario>:<key>:<type>`; subset is the image type (the benchmark's own split); the
source category is the scenario (file stem, spelled as published); every item is spec["label"].
Files are read in name order, keys in numeric order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from safeforge.benchmarks.base import (
    BenchmarkError,
    BenchmarkFormatError,
    RawItem,
    join_image,
    read_json,
    register_adapter,
    text_field,
)


def _key_order(key: str) -> tuple[int, int, str]:
    # "10" after "9"; a key that is not a number (none are published) sorts after, by name,
    # and still reads: its image path is checked by base.py like any other
    return (0, int(key), "") if key.isascii() and key.isdigit() else (1, 0, key)


@register_adapter("mmsafetybench")
def read(root: Path, spec: Mapping[str, Any]) -> Iterator[RawItem]:
    folder = root / spec["questions"]
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise BenchmarkError(
            f"{root} is not an MM-SafetyBench folder: no *.json under {spec['questions']} "
            f"(set `questions` in conf/benchmarks/ if your copy differs)"
        )
    image_types: Mapping[str, str] = spec["image_types"]
    for path in files:
        scenario = path.stem
        questions = read_json(path)
        if not isinstance(questions, Mapping):
            raise BenchmarkFormatError(path, None, 'expected an object keyed "0", "1", ...')
        for key in sorted(questions, key=_key_order):
            where = f"key {key!r}"
            for image_type, question_field in sorted(image_types.items()):
                text = text_field(questions[key], question_field, path, where)
                yield RawItem(
                    item_id=f"{scenario}:{key}:{image_type}",
                    image=join_image(spec["images"], f"{scenario}/{image_type}/{key}.jpg"),
                    text=text,
                    label=spec["label"],
                    subset=image_type,
                    source_category=scenario,
                )
