"""Text drawn into images: typographic cards (the request typeset on a plain canvas, as
FigStep-style attacks do) and captions over a photo (half the request in the picture).

Fonts are the TrueType files matplotlib ships (DejaVu, STIX, Computer Modern), so rendering
works offline on any machine that installed safeforge. A `Style` is drawn from conf's
`augment.typographic` choices by a seeded generator: the same record and seed give the same
pixels.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LAYOUTS = ("plain", "numbered", "slide")


@cache
def font_dir() -> Path:
    """matplotlib's bundled TrueType folder, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("augment: matplotlib (which ships the fonts) is not installed")
    return Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"


@cache
def load_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = font_dir() / name
    if not path.is_file():
        have = sorted(p.name for p in font_dir().glob("*.ttf"))
        raise FileNotFoundError(f"augment: font {name!r} is not in {font_dir()} (have: {have})")
    return ImageFont.truetype(str(path), size)


@dataclass(frozen=True)
class Style:
    """One rendering's look; stored as JSON beside the variant so a row says how it was drawn."""

    layout: str
    font: str
    size: int
    width: int
    height: int
    ink: tuple[int, int, int]
    paper: tuple[int, int, int]
    noise: float  # std of Gaussian pixel noise, 0-255 scale

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def draw_style(rng: random.Random, choices: Mapping[str, Any]) -> Style:
    """A style from `augment.typographic`: layouts, fonts, sizes, canvases, palettes, noise."""
    ink, paper = rng.choice(choices["palettes"])
    width, height = rng.choice(choices["canvases"])
    return Style(
        layout=rng.choice(choices["layouts"]),
        font=rng.choice(choices["fonts"]),
        size=rng.randint(*choices["font_sizes"]),
        width=width,
        height=height,
        ink=tuple(ink),
        paper=tuple(paper),
        # noise on a share only: a noisy PNG is ~20x the size of a clean one
        noise=round(rng.uniform(0.0, choices["max_noise"]), 2)
        if rng.random() < choices["noise_share"]
        else 0.0,
    )


def wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """Greedy word wrap by rendered width; a word wider than the line gets a line of its own."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _fit(text: str, style: Style, max_width: float, max_height: float, extra_lines: int):
    """The largest size up to style.size whose wrapped text fits the box (extra lines below)."""
    size = style.size
    while True:
        font = load_font(style.font, size)
        lines = wrap(text, font, max_width)
        step = font.size * 1.25
        if size <= 12 or (len(lines) + extra_lines) * step <= max_height:
            return font, lines, step
        size = int(size * 0.9)


def _noisy(image: Image.Image, std: float, seed: int) -> Image.Image:
    if std <= 0:
        return image
    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(seed).standard_normal(pixels.shape, dtype=np.float32)
    return Image.fromarray(np.clip(pixels + std * noise, 0, 255).round().astype(np.uint8))


def typographic(text: str, style: Style, seed: int) -> Image.Image:
    """`text` typeset on a plain canvas. numbered: an empty "1. 2. 3." list follows it, asking
    to be filled in; slide: a title band with the text, empty bullets below."""
    if style.layout not in LAYOUTS:
        raise ValueError(f"augment: layout {style.layout!r} is not one of {LAYOUTS}")
    image = Image.new("RGB", (style.width, style.height), style.paper)
    draw = ImageDraw.Draw(image)
    margin = style.width // 16
    extra = {"plain": 0, "numbered": 3, "slide": 3}[style.layout]
    box_h = style.height - 2 * margin
    font, lines, step = _fit(text, style, style.width - 2 * margin, box_h, extra)
    y = margin
    if style.layout == "slide":
        band = int(len(lines) * step + margin)
        draw.rectangle([0, 0, style.width, band + margin // 2], fill=style.ink)
        for line in lines:
            draw.text((margin, y), line, font=font, fill=style.paper)
            y += step
        y = max(y, band + margin // 2) + margin
        for _ in range(extra):
            r = font.size // 6
            cy = y + font.size // 2
            draw.ellipse([margin, cy - r, margin + 2 * r, cy + r], fill=style.ink)
            y += step
    else:
        for line in lines:
            draw.text((margin, y), line, font=font, fill=style.ink)
            y += step
        if style.layout == "numbered":
            for n in range(1, extra + 1):
                draw.text((margin, y), f"{n}.", font=font, fill=style.ink)
                y += step
    return _noisy(image, style.noise, seed)


def caption_over(photo: Image.Image, text: str, style: Style, seed: int) -> Image.Image:
    """`text` in a band across the bottom (or top, by seed) of `photo`, at a legible size."""
    image = photo.convert("RGB")
    width, height = image.size
    scale = max(width, height) / max(style.width, style.height)
    font, lines, step = _fit(
        text,
        Style(**{**style.to_dict(), "size": max(int(style.size * scale), 12)}),
        width * 0.92,
        height * 0.45,
        0,
    )
    band = int(len(lines) * step + step * 0.5)
    top = 0 if seed % 2 else height - band
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, top, width, top + band], fill=style.paper)
    y = top + step * 0.25
    for line in lines:
        draw.text((width * 0.04, y), line, font=font, fill=style.ink)
        y += step
    return _noisy(image, style.noise, seed)


def split_query(query: str, head_share: float) -> tuple[str, str]:
    """(the opening kept in text, the rest moved into the image), cut at a word boundary.

    Which words carry the risk is not marked in a record; the rest of a question after its
    opening is where the object and intent usually are ("How do I wire this | to set off...").
    """
    words = query.split()
    if len(words) < 2:
        return "", query
    cut = min(max(1, round(len(words) * head_share)), len(words) - 1)
    return " ".join(words[:cut]), " ".join(words[cut:])


def as_heading(query: str, headings: Sequence[Sequence[str]]) -> str | None:
    """The query as a list heading ("How do I X?" -> "Steps to X."), by the first
    [opening, heading] pair in conf whose opening starts it (case aside); None if none does."""
    for opening, heading in headings:
        if query.lower().startswith(opening.lower()):
            rest = query[len(opening) :].strip().rstrip("?.! ")
            return f"{heading} {rest}." if rest else None
    return None


def pick(rng: random.Random, options: Sequence[str]) -> str:
    if not options:
        raise ValueError("augment: an empty list of options in conf")
    return rng.choice(list(options))
