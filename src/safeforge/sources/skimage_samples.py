"""The real photos that ship inside scikit-image, with the package's own description as caption.

Only files present in the installed package are used (no pooch downloads). Synthetic test
patterns (chessboard, phantom, logo, binary blobs...) are left out: they are not photos.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from safeforge import io

# file in skimage/data -> the skimage.data function whose docstring describes it
PHOTOS: dict[str, str] = {
    "astronaut.png": "astronaut",
    "brick.png": "brick",
    "camera.png": "camera",
    "cell.png": "cell",
    "chelsea.png": "chelsea",
    "clock_motion.png": "clock",
    "coffee.png": "coffee",
    "coins.png": "coins",
    "grass.png": "grass",
    "gravel.png": "gravel",
    "hubble_deep_field.jpg": "hubble_deep_field",
    "ihc.png": "immunohistochemistry",
    "microaneurysms.png": "microaneurysms",
    "moon.png": "moon",
    "motorcycle_left.png": "stereo_motorcycle",
    "motorcycle_right.png": "stereo_motorcycle",
    "page.png": "page",
    "retina.jpg": "retina",
    "rocket.jpg": "rocket",
    "text.png": "text",
}


@dataclass(frozen=True)
class Sample:
    file: str
    caption: str


def caption_for(file: str, function_name: str) -> str:
    """The file's name and the prose of its skimage.data docstring (before Returns/Notes)."""
    import skimage.data

    doc = inspect.getdoc(getattr(skimage.data, function_name)) or ""
    prose = []
    for paragraph in doc.split("\n\n"):
        if paragraph.lstrip().startswith(("Returns", "Notes", "References", "Parameters", "..")):
            break
        prose.append(" ".join(paragraph.split()))
    # the file name carries the subject where the docstring does not ("motorcycle_left")
    subject = Path(file).stem.replace("_", " ")
    return f"{subject}: {' '.join(prose)}"


def bundled_samples() -> list[Sample]:
    import skimage

    data_dir = Path(skimage.__file__).parent / "data"
    return [
        Sample(file, caption_for(file, fn))
        for file, fn in PHOTOS.items()
        if (data_dir / file).exists()
    ]


def export(out_dir: Path, min_images: int) -> list[Sample]:
    """Write the bundled photos as PNG plus captions.jsonl into `out_dir`."""
    import skimage

    data_dir = Path(skimage.__file__).parent / "data"
    samples = bundled_samples()
    if len(samples) < min_images:
        raise RuntimeError(
            f"scikit-image {importlib.metadata.version('scikit-image')} ships {len(samples)} of the "
            f"expected photos in {data_dir}, fewer than samples.min_images={min_images}"
        )
    exported = []
    for sample in samples:
        name = Path(sample.file).stem + ".png"
        # re-encode as PNG: the source bytes are what the package ships, the pixels are the same
        pixels = np.asarray(Image.open(data_dir / sample.file))
        with io.atomic_path(out_dir / name) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")
        exported.append(Sample(name, sample.caption))
    lines = [json.dumps({"file": s.file, "caption": s.caption}) for s in exported]
    io.write_text(out_dir / "captions.jsonl", "\n".join(lines) + "\n")
    return exported
