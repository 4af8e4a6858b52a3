"""An image-dedup corpus of REAL photographs with known copies, and hard negatives.

Sources (fetched, never committed): Debian packages downloaded with `apt-get download` into a
cache folder and unpacked there with `dpkg-deb -x` (nothing is installed), plus the sample
photos bundled in scikit-image, scikit-learn and matplotlib:

- photos: wallpaper packages (lomiri-wallpapers-16.04/-20.04, mate-backgrounds' nature set,
  plasma-workspace-wallpapers' photographic ones, palapeli-data's puzzle photos), GCompris'
  photo activities (gcompris-qt-data: categorization, erase, explore_*; read out of its Qt .rcc
  resource files), OpenCV's sample photos (opencv-doc) and the Python packages' samples;
- hard negatives, distinct images on a plain white background that pHash tends to merge:
  cartoons (GCompris' lang activity), clip-art (openclipart-png), Tux Paint stamps (object
  cut-outs, many photographic: product-style photos on white), icons (adwaita-icon-theme) and
  typographic slides (different text on white, drawn here in DejaVu / Pillow's font).

The source set is de-duplicated first: wallpapers ship one photo at several sizes, crops and
light/dark variants, stereo pairs and before/after pairs exist. Each image's normalised 32x32
grey thumbnail of its centre square is compared with all others; groups correlating > 0.9
(0.95 for the white-background images, which all look alike at that size) keep only their
largest member. main() prints the groups found.

The corpus mirrors benchmarks/dedup_corpus.py (columns path, base, transform, param): about half
the images are clusters (a base plus 3 copies), the rest singletons ("unrelated"): photos with no
copy and the hard negatives. Bases are downscaled to a web size (longest side 640-1600 px, never
upscaled) and saved as JPEG q90; copies, each transform equally often, as JPEG q90 too:
crop 5% per side (kept at the cropped size), rotate +-3 degrees (bicubic, expand=False),
text (a caption ~h/12 high, white with a black stroke, top or bottom), resize x0.5,
jpeg (saved at q30), brightness x1.2 or x0.8. A base id starts with its family: photo (a real
photo), tile (derived, below) or the hard negative's kind (cartoon, clipart, stamp, icon, slide).

There are ~330 distinct real photos. When a corpus needs more distinct images than the photos
and a share of hard negatives provide (the 35000-image speed corpus), extra bases are DERIVED,
only to reach the count: some of the largest photos are withheld from use as bases and cut
into non-overlapping tiles (320 px a side, or 224 or 160 where too few), textured ones only, each tile its own
base. Tiles of one photo share no pixel, but may share a subject.

    python benchmarks/real_photo_corpus.py [--n 2000] [--seed 0] [--out DIR] [--cache DIR]
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import json
import multiprocessing
import random
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

sys.path.insert(0, str(Path(__file__).parent))
from dedup_corpus import CAPTIONS, COPIES_PER_CLUSTER, TRANSFORMS

from safeforge.images.phash import phash

DEFAULT_CACHE = Path("/tmp/realphotos/cache")
PHOTO_MAX_CORR = 0.9  # centre-square 32x32 thumbnails correlating more: one source image
WHITE_MAX_CORR = 0.95  # the same for white-background images, alike at 32x32 by construction
HARD_NEGATIVE_SHARE = 0.35  # of the singletons
MIN_TILE = 320
TILE_SIDES = (MIN_TILE, 224, 160)  # tried in turn until the tiles cover the corpus
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
MORE_CAPTIONS = ("me irl", "nobody:", "this is fine", "plot twist", "same", "big mood")

# package -> globs (relative to the unpacked package) of its real photographs
PHOTO_GLOBS: dict[str, tuple[str, ...]] = {
    "lomiri-wallpapers-16.04": tuple(
        f"usr/share/backgrounds/{n}_by_*.jpg"
        for n in (
            "Bridge",
            "Dragonfly",
            "Picture_0B",
            "Picture_1A",
            "Wine",
            "aitzgorri",
            "analogpattern",
            "free",
            "friends",
            "life",
            "picosdeeuropa",
            "seeding",
            "sunset",
        )
    ),
    "lomiri-wallpapers-20.04": ("usr/share/backgrounds/Kleiber_by_*.jpg",),
    "mate-backgrounds": ("usr/share/backgrounds/mate/nature/*.jpg",),
    "palapeli-data": ("usr/share/palapeli/collection/*.jpg",),
    "plasma-workspace-wallpapers": tuple(
        f"usr/share/wallpapers/{n}/contents/images/*.jpg"
        for n in (
            "BytheWater",
            "ColdRipple",
            "ColorfulCups",
            "DarkestHour",
            "EveningGlow",
            "FallenLeaf",
            "Grey",
            "Kite",
            "OneStandsOut",
            "Path",
            "summer_1am",
        )
    ),
    "opencv-doc": tuple(
        f"usr/share/doc/opencv-doc/examples/{n}"
        for n in (
            "alphamat/input_images/plant.jpg",
            "data/aero1.jpg",
            "data/aloeL.jpg",
            "data/apple.jpg",
            "data/baboon.jpg",
            "data/basketball1.png",
            "data/board.jpg",
            "data/box_in_scene.png",
            "data/building.jpg",
            "data/butterfly.jpg",
            "data/ela_original.jpg",
            "data/fruits.jpg",
            "data/graf1.png",
            "data/home.jpg",
            "data/leuvenA.jpg",
            "data/licenseplate_motion.jpg",
            "data/messi5.jpg",
            "data/orange.jpg",
            "data/rubberwhale1.png",
            "data/squirrel_cls.jpg",
            "dnn_superres/butterfly.png",
            "hfs/data/000.jpg",
            "hfs/data/002.jpg",
            "text/scenetext0[1-6].jpg",
        )
    ),
    "gcompris-qt-data": tuple(
        f"rcc/{a}/*.webp"
        for a in (
            "categorization",
            "erase",
            "explore_monuments",
            "explore_world_animals",
            "explore_farm_animals",
            "explore_world_music",
        )
    ),
}
# not photos: drawn letter/number blocks among GCompris' photo categories
PHOTO_EXCLUDE = ("*alphabets*", "*numbers*")
NEGATIVE_GLOBS: dict[str, tuple[str, str]] = {  # family -> (package, glob)
    "cartoon": ("gcompris-qt-data", "rcc/lang/*.webp"),
    "clipart": ("openclipart-png", "usr/share/openclipart/png/**/*.png"),
    "stamp": ("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/**/*.png"),
    "icon": ("adwaita-icon-theme", "usr/share/icons/Adwaita/96x96/**/*.png"),
}
PYTHON_SAMPLES = {  # package -> files in its data folder
    "scikit-image": (
        "astronaut.png",
        "brick.png",
        "camera.png",
        "chelsea.png",
        "clock_motion.png",
        "coffee.png",
        "coins.png",
        "grass.png",
        "gravel.png",
        "hubble_deep_field.jpg",
        "moon.png",
        "motorcycle_left.png",
        "page.png",
        "retina.jpg",
        "rocket.jpg",
        "text.png",
    ),
    "scikit-learn": ("china.jpg", "flower.jpg"),
    "matplotlib": ("grace_hopper.jpg",),
}
PYTHON_LICENCES = {
    "scikit-image": "see skimage/data/README.txt (public domain / CC0 / CC-BY, per image)",
    "scikit-learn": "CC-BY-2.0 (china.jpg), CC-BY-2.0 (flower.jpg): sklearn/datasets/images",
    "matplotlib": "public domain (US Navy photo)",
}
FALLBACK_LICENCES = {"openclipart-png": "public-domain", "gnome-backgrounds": "CC-BY-SA-3.0"}
WORDS = [
    "quarterly",
    "results",
    "revenue",
    "growth",
    "team",
    "update",
    "roadmap",
    "launch",
    "plan",
    "customer",
    "feedback",
    "security",
    "review",
    "budget",
    "hiring",
    "goals",
    "metrics",
    "design",
    "sprint",
    "retrospective",
    "agenda",
    "summary",
    "next",
    "steps",
    "risks",
    "timeline",
    "milestones",
    "product",
    "strategy",
    "marketing",
    "sales",
    "support",
    "training",
    "onboarding",
    "policy",
    "compliance",
    "research",
    "findings",
    "analysis",
    "proposal",
    "overview",
    "introduction",
    "conclusion",
    "questions",
    "thanks",
    "welcome",
    "project",
    "status",
    "weekly",
    "monthly",
    "annual",
    "report",
    "board",
    "meeting",
    "notes",
    "action",
    "items",
    "owners",
    "dependencies",
    "architecture",
    "migration",
    "performance",
    "cost",
    "savings",
    "partners",
    "market",
    "share",
    "pricing",
    "survey",
    "results",
    "lessons",
    "learned",
    "vision",
    "mission",
]


@dataclass(frozen=True)
class Source:
    path: Path
    package: str
    licence: str
    family: str  # photo, cartoon, clipart, stamp, icon


# ---------------------------------------------------------------------------- fetching


def _unpack(cache_dir: Path, package: str) -> Path:
    """The unpacked tree of a Debian package, downloaded and unpacked into cache_dir if needed."""
    root = cache_dir / "pkg" / package
    if (root / ".done").exists():
        return root
    debs = cache_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{package}_*.deb")):
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    if package == "gcompris-qt-data":
        _unpack_rcc(root / "usr/share/gcompris-qt/rcc", root / "rcc")
    (root / ".done").touch()
    return root


def _rcc_files(data: bytes) -> list[tuple[str, bytes]]:
    """(path, content) of each file in a Qt binary resource (.rcc) file."""
    magic, version, tree, payload, names = struct.unpack(">4sIIII", data[:20])
    if magic != b"qres":
        raise ValueError("not an rcc file")
    entry = 14 if version == 1 else 22

    def name(offset: int) -> str:
        (n,) = struct.unpack(">H", data[names + offset : names + offset + 2])
        return data[names + offset + 6 : names + offset + 6 + 2 * n].decode("utf-16-be")

    out: list[tuple[str, bytes]] = []
    stack = [(0, "")]
    while stack:
        i, parent = stack.pop()
        e = tree + i * entry
        name_offset, flags = struct.unpack(">IH", data[e : e + 6])
        path = f"{parent}/{name(name_offset)}" if i else ""
        if flags & 2:  # a directory
            count, first = struct.unpack(">II", data[e + 6 : e + 14])
            stack += [(first + c, path) for c in range(count)]
            continue
        (offset,) = struct.unpack(">I", data[e + 10 : e + 14])
        (size,) = struct.unpack(">I", data[payload + offset : payload + offset + 4])
        blob = data[payload + offset + 4 : payload + offset + 4 + size]
        if flags & 1:
            blob = zlib.decompress(blob[4:])
        elif flags & 4:
            continue  # zstd: not used for images in this package
        out.append((path, blob))
    return out


def _unpack_rcc(rcc_dir: Path, out_dir: Path) -> None:
    """Images in GCompris' .rcc resources, as out_dir/<activity>/<name>."""
    for rcc in sorted(rcc_dir.glob("*.rcc")):
        for path, blob in _rcc_files(rcc.read_bytes()):
            if path.lower().endswith((".webp", ".jpg", ".jpeg", ".png")):
                dest = out_dir / rcc.stem / path.strip("/").replace("/", "__")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(blob)


def _copyright_licence(root: Path, package: str, rel: str) -> str:
    """The licence DEP-5 copyright gives the file (its last matching Files: stanza, matched
    against every tail of the file's path), or the package's fallback."""
    files = list((root / "usr/share/doc").glob("*/copyright"))
    text = files[0].read_text(errors="replace") if files else ""
    parts = rel.replace("__", "/").split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    found = None
    for stanza in re.split(r"\n\s*\n", text):
        m_files = re.search(r"^Files:(.*(?:\n[ \t]+.*)*)", stanza, re.M)
        m_lic = re.search(r"^License:[ \t]*(\S.*)", stanza, re.M)
        if not (m_files and m_lic):
            continue
        patterns = m_files.group(1).split()
        if any(fnmatch.fnmatch(t, p) for p in patterns for t in tails):
            found = m_lic.group(1).strip()
    return found or FALLBACK_LICENCES.get(package, "see copyright")


def _python_samples() -> list[Source]:
    import matplotlib
    import skimage
    import sklearn

    dirs = {
        "scikit-image": Path(skimage.__file__).parent / "data",
        "scikit-learn": Path(sklearn.__file__).parent / "datasets/images",
        "matplotlib": Path(matplotlib.get_data_path()) / "sample_data",
    }
    return [
        Source(dirs[pkg] / f, pkg, PYTHON_LICENCES[pkg], "photo")
        for pkg, names in PYTHON_SAMPLES.items()
        for f in names
        if (dirs[pkg] / f).exists()
    ]


def fetch_sources(cache_dir: Path = DEFAULT_CACHE) -> list[Source]:
    """Every candidate photo and hard negative, fetched into cache_dir if missing (before the
    source de-duplication)."""
    out: list[Source] = []
    for package, globs in PHOTO_GLOBS.items():
        root = _unpack(cache_dir, package)
        for path in sorted({p for g in globs for p in root.glob(g)}):
            rel = str(path.relative_to(root))
            if not any(fnmatch.fnmatch(rel, x) for x in PHOTO_EXCLUDE):
                out.append(Source(path, package, _copyright_licence(root, package, rel), "photo"))
    out += _python_samples()
    for family, (package, glob) in NEGATIVE_GLOBS.items():
        root = _unpack(cache_dir, package)
        for path in sorted(root.glob(glob)):
            rel = str(path.relative_to(root))
            out.append(Source(path, package, _copyright_licence(root, package, rel), family))
    return out


def fetch_photos(cache_dir: Path = DEFAULT_CACHE) -> list[Path]:
    """Paths of the real photographs, fetched into cache_dir if missing (not de-duplicated)."""
    return [s.path for s in fetch_sources(cache_dir) if s.family == "photo"]


# ------------------------------------------------------------------- loading, distinctness


def on_white(img: Image.Image) -> Image.Image:
    """RGB, transparent pixels composited over white."""
    if img.mode in ("RGBA", "LA", "P", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, "white")
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return img.convert("RGB")


def load(path: Path, max_side: int | None = None) -> Image.Image:
    with Image.open(path) as img:
        if max_side and img.format == "JPEG":
            img.draft("RGB", (max_side, max_side))
        out = on_white(img)
    if max_side and max(out.size) > max_side:
        out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return out


def centre_thumb(img: Image.Image, side: int = 32) -> np.ndarray:
    """Normalised grey thumbnail of the image's centre square (zero mean, unit norm)."""
    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    grey = img.convert("L").resize((side, side), Image.Resampling.BOX, box=box)
    v = np.asarray(grey, np.float32).ravel()
    v = v - v.mean()
    return v / (np.linalg.norm(v) + 1e-6)


def near_groups(thumbs: np.ndarray, max_corr: float) -> list[list[int]]:
    """Groups (size > 1) of indices linked by thumbnail correlation > max_corr."""
    parent = list(range(len(thumbs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(thumbs), 2048):
        corr = thumbs[start : start + 2048] @ thumbs.T
        for a, b in zip(*np.nonzero(corr > max_corr), strict=True):
            if start + a < b:
                parent[find(start + a)] = find(b)
    groups: dict[int, list[int]] = {}
    for i in range(len(thumbs)):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


@dataclass
class Prepared:
    photos: list[tuple[Source, tuple[int, int]]]  # distinct photos and their full sizes
    negatives: list[Source]  # distinct hard negatives
    groups: list[list[Source]]  # near-identical source groups (the first one kept)


def _fields(source: Source) -> list[str]:
    return [str(v) for v in astuple(source)]


def _source(fields: list[str]) -> Source:
    return Source(Path(fields[0]), *fields[1:])


def prepare(cache_dir: Path = DEFAULT_CACHE) -> Prepared:
    """The distinct sources: each near-identical group reduced to its largest member."""
    cached = cache_dir / "prepared.json"  # plain lists: never a pickle
    if cached.exists():
        photos, negatives, groups = json.loads(cached.read_text())
        return Prepared(
            [(_source(s), tuple(size)) for s, size in photos],
            [_source(s) for s in negatives],
            [[_source(s) for s in g] for g in groups],
        )
    sources = fetch_sources(cache_dir)
    sizes, thumbs, keep = [], [], []
    for s in sources:
        try:
            with Image.open(s.path) as img:
                size = img.size
            img = load(s.path, 256)
        except (OSError, Image.DecompressionBombError):
            continue
        if min(size) < 48:
            continue
        sizes.append(size)
        thumbs.append(centre_thumb(img))
        keep.append(s)
    sources = keep
    thumbs_arr = np.stack(thumbs)
    dropped: set[int] = set()
    groups: list[list[Source]] = []
    for white in (False, True):
        idx = [i for i, s in enumerate(sources) if (s.family != "photo") == white]
        for g in near_groups(thumbs_arr[idx], WHITE_MAX_CORR if white else PHOTO_MAX_CORR):
            members = sorted((idx[k] for k in g), key=lambda i: -sizes[i][0] * sizes[i][1])
            dropped.update(members[1:])
            groups.append([sources[i] for i in members])
    photos = [
        (s, sizes[i]) for i, s in enumerate(sources) if s.family == "photo" and i not in dropped
    ]
    negatives = [s for i, s in enumerate(sources) if s.family != "photo" and i not in dropped]
    cached.write_text(
        json.dumps(
            [
                [(_fields(s), size) for s, size in photos],
                [_fields(s) for s in negatives],
                [[_fields(s) for s in g] for g in groups],
            ]
        )
    )
    return Prepared(photos, negatives, groups)


# ------------------------------------------------------------------------------ rendering


def font(size: int, bold: bool = True) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    if (FONT_DIR / name).exists():
        return ImageFont.truetype(str(FONT_DIR / name), size)
    return ImageFont.load_default(size=size)


def slide(rng: random.Random) -> Image.Image:
    """A typographic slide: a title and 3-5 bullet lines of random words, dark on white."""
    w, h = rng.choice(((1280, 720), (1024, 768), (960, 540)))
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    title = " ".join(rng.sample(WORDS, rng.randint(2, 4))).title()
    draw.text((w // 14, h // 12), title, fill=(20, 20, 20), font=font(h // 12))
    size, y = h // 22, h // 12 + h // 6
    for _ in range(rng.randint(3, 5)):
        line = "\u2022 " + " ".join(rng.sample(WORDS, rng.randint(3, 7)))
        draw.text((w // 10, y), line, fill=(50, 50, 50), font=font(size, bold=False))
        y += int(size * 2.2)
    return img


def on_canvas(img: Image.Image, rng: random.Random) -> Image.Image:
    """A cut-out, clip-art or icon centred on a white canvas with a 5-25% margin."""
    side = rng.randint(320, 800)
    margin = rng.uniform(0.05, 0.25)
    inner = round(side * (1 - 2 * margin))
    img = img.copy()
    scale = inner / max(img.size)
    img = img.resize(
        (max(1, round(img.width * scale)), max(1, round(img.height * scale))),
        Image.Resampling.LANCZOS,
    )
    aspect = rng.choice((1.0, 4 / 3, 3 / 4))
    cw, ch = (side, round(side / aspect)) if aspect >= 1 else (round(side * aspect), side)
    cw, ch = max(cw, img.width + 8), max(ch, img.height + 8)
    canvas = Image.new("RGB", (cw, ch), "white")
    canvas.paste(img, ((cw - img.width) // 2, (ch - img.height) // 2))
    return canvas


def web_size(img: Image.Image, longest: int) -> Image.Image:
    if max(img.size) <= longest:
        return img
    s = longest / max(img.size)
    return img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.LANCZOS)


def caption(img: Image.Image, text: str, where: str) -> Image.Image:
    out = img.copy()
    w, h = out.size
    size = max(12, h // 12)
    f = font(size)
    draw = ImageDraw.Draw(out)
    tw = draw.textlength(text, font=f)
    x = max(4, round((w - tw) / 2))
    y = 4 if where == "top" else h - size - max(8, h // 40)
    stroke = max(2, size // 12)
    draw.text((x, y), text, fill="white", font=f, stroke_width=stroke, stroke_fill="black")
    return out


def apply(img: Image.Image, transform: str, param: str) -> Image.Image:
    """The copy of `img` that (transform, param) names; jpeg is applied at save time."""
    w, h = img.size
    if transform == "crop":
        box = (round(0.05 * w), round(0.05 * h), round(0.95 * w), round(0.95 * h))
        return img.crop(box)
    if transform == "rotate":
        return img.rotate(float(param[4:]), Image.Resampling.BICUBIC, expand=False)
    if transform == "text":
        where, text = param.split(":", 1)
        return caption(img, text, where)
    if transform == "resize":
        return img.resize((round(w * 0.5), round(h * 0.5)), Image.Resampling.BICUBIC)
    if transform == "jpeg":
        return img
    if transform == "brightness":
        return ImageEnhance.Brightness(img).enhance(float(param[1:]))
    raise ValueError(transform)


def draw_param(transform: str, rng: random.Random) -> str:
    if transform == "crop":
        return "crop=0.05"
    if transform == "rotate":
        return f"deg={rng.choice((-3, 3))}"
    if transform == "text":
        return f"{rng.choice(('top', 'bottom'))}:{rng.choice(CAPTIONS + MORE_CAPTIONS)}"
    if transform == "resize":
        return "scale=0.5"
    if transform == "jpeg":
        return "q=30"
    if transform == "brightness":
        return f"x{rng.choice((1.2, 0.8))}"
    raise ValueError(transform)


@dataclass
class Job:
    """One base image and its copies, rendered by a worker process."""

    kind: str  # photo, tile, negative, slide
    source: str  # a path; for a slide, its rng seed
    box: tuple[int, int, int, int] | None  # a tile's box in the full-size photo
    longest: int  # web size of a photo base
    seed: int
    outputs: list[tuple[str, str, str]]  # (path, transform, param), "original" first


def render(jobs: list[Job]) -> int:
    """Write the jobs' images; the jobs of one call share their source file (one decode)."""
    loaded: dict[str, Image.Image] = {}
    for job in jobs:
        rng = random.Random(job.seed)
        if job.kind == "slide":
            img = slide(rng)
        elif job.kind == "negative":
            img = on_canvas(load(Path(job.source)), rng)
            if max(img.size) > 900:
                img = web_size(img, 900)
        else:
            if job.source not in loaded:
                loaded.clear()
                loaded[job.source] = load(Path(job.source))
            img = loaded[job.source]
            if job.box:
                img = img.crop(job.box)
            img = web_size(img, job.longest)
        for path, transform, param in job.outputs:
            out = img if transform in ("original", "unrelated") else apply(img, transform, param)
            out.save(path, quality=30 if transform == "jpeg" else 90)
    return len(jobs)


# -------------------------------------------------------------------------------- corpus


def tiles(size: tuple[int, int], min_tile: int = MIN_TILE) -> list[tuple[int, ...]]:
    """Non-overlapping boxes covering a photo of `size`: a grid of cells >= min_tile a side."""
    w, h = size
    cols, rows = max(1, w // min_tile), max(1, h // min_tile)
    if cols * rows < 2:
        return []
    cw, ch = w // cols, h // rows
    return [(c * cw, r * ch, (c + 1) * cw, (r + 1) * ch) for r in range(rows) for c in range(cols)]


def textured_tiles(
    path: Path, size: tuple[int, int], min_tile: int = MIN_TILE
) -> list[tuple[int, ...]]:
    """The photo's tiles with some texture (grey std >= 20) that are not alike each other."""
    boxes = tiles(size, min_tile)
    if not boxes:
        return []
    img = load(path, 1024)
    s = img.width / size[0]
    out, taken = [], []
    for box in boxes:
        small = img.crop(tuple(round(v * s) for v in box))
        if np.asarray(small.convert("L"), np.float32).std() < 20:
            continue
        t = centre_thumb(small, 16)
        if taken and float(np.max(np.stack(taken) @ t)) > 0.8:
            continue
        taken.append(t)
        out.append(box)
    return out


def build_real_corpus(
    out_dir: Path,
    n_images: int,
    seed: int = 0,
    cache_dir: Path = DEFAULT_CACHE,
    workers: int = 2,
    prepared: Prepared | None = None,
) -> pl.DataFrame:
    """Write ~n_images JPEGs into out_dir; one row per file: path, base, transform, param.

    About half the images are clusters (a base and 3 copies), bases being real photos first;
    the singletons are the photos left, hard negatives (35% of the singletons, the slides
    generated as many as needed), then derived tiles. Tiles (derived bases, used only to reach
    the count) come from the largest photos, which are then not bases themselves."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    prep = prepared or prepare(cache_dir)
    n_clusters = max(1, round(n_images * 0.5 / (1 + COPIES_PER_CLUSTER)))
    n_single = max(0, n_images - n_clusters * (1 + COPIES_PER_CLUSTER))
    n_negative = round(n_single * HARD_NEGATIVE_SHARE)
    photos = list(prep.photos)
    rng.shuffle(photos)
    n_need_photos = n_clusters + n_single - n_negative  # bases that are photos or tiles
    # withhold the largest photos for tiles until photos + tiles cover the need; smaller tiles
    # where the larger ones fall short (a 35k-image corpus), never a flood of generated slides
    by_size = sorted(photos, key=lambda p: -p[1][0] * p[1][1])
    for min_tile in TILE_SIDES:
        tile_boxes: list[tuple[Source, tuple[int, ...]]] = []
        withheld: set[Path] = set()
        for src, size in by_size:
            if len(photos) - len(withheld) + len(tile_boxes) >= n_need_photos:
                break
            boxes = textured_tiles(src.path, size, min_tile)
            if len(boxes) > 1:
                withheld.add(src.path)
                tile_boxes += [(src, b) for b in boxes]
        if len(photos) - len(withheld) + len(tile_boxes) >= n_need_photos:
            break
    photo_bases = [p for p in photos if p[0].path not in withheld]

    def job(kind: str, source: str, box: tuple[int, ...] | None = None) -> Job:
        return Job(kind, source, box, rng.randint(640, 1600), rng.getrandbits(32), [])

    photo_jobs = [("photo", job("photo", str(s.path))) for s, _ in photo_bases]
    tile_jobs = [("tile", job("tile", str(s.path), b)) for s, b in tile_boxes]
    rng.shuffle(tile_jobs)
    bases = photo_jobs + tile_jobs  # photos first: clusters are real photos while they last
    by_family: dict[str, list[Source]] = {}
    for s in prep.negatives:
        by_family.setdefault(s.family, []).append(s)
    for group in by_family.values():
        rng.shuffle(group)
    pools = [iter(by_family[f]) for f in sorted(by_family)] + [None]  # None: a slide
    negative_jobs: list[tuple[str, Job]] = []
    for k in itertools.count():  # the kinds in turn, equally often while they last
        if len(negative_jobs) >= n_negative or not pools:
            break
        pool = pools[k % len(pools)]
        if pool is None:
            negative_jobs.append(("slide", job("slide", "")))
        elif (s := next(pool, None)) is not None:
            negative_jobs.append((s.family, job("negative", str(s.path))))
        else:
            pools.remove(pool)
    shortfall = n_clusters + n_single - n_negative - len(bases)
    if shortfall > 0:  # too few photos and tiles: more slides
        negative_jobs += [("slide", job("slide", "")) for _ in range(shortfall)]
    cluster_jobs, single_jobs = bases[:n_clusters], bases[n_clusters : n_clusters + n_single]
    single_jobs = single_jobs[: n_single - len(negative_jobs)] + negative_jobs
    single_jobs = single_jobs[:n_single]

    names = list(range(n_clusters * (1 + COPIES_PER_CLUSTER) + len(single_jobs)))
    rng.shuffle(names)  # cluster members are not neighbours on disk
    names_iter = iter(names)
    rows, cycle = [], []
    for b, (family, j) in enumerate(cluster_jobs + single_jobs):
        base = f"{family}{b:05d}"
        clustered = b < n_clusters
        j.outputs.append(
            (
                str(out_dir / f"img{next(names_iter):05d}.jpg"),
                "original" if clustered else "unrelated",
                "",
            )
        )
        for _ in range(COPIES_PER_CLUSTER if clustered else 0):
            if not cycle:
                cycle = list(TRANSFORMS)
                rng.shuffle(cycle)
            t = cycle.pop()
            j.outputs.append(
                (str(out_dir / f"img{next(names_iter):05d}.jpg"), t, draw_param(t, rng))
            )
        for path, transform, param in j.outputs:
            rows.append({"path": path, "base": base, "transform": transform, "param": param})
    # one task per source file, so each photo is decoded once
    by_source: dict[str, list[Job]] = {}
    for _, j in cluster_jobs + single_jobs:
        by_source.setdefault(j.source if j.kind in ("photo", "tile") else f"{id(j)}", []).append(j)
    tasks = sorted(by_source.values(), key=len, reverse=True)
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(render, tasks, chunksize=4):
                pass
    else:
        for t in tasks:
            render(t)
    return pl.DataFrame(rows).sort("path")


# ---------------------------------------------------------------------------------- main


def sources_table(prep: Prepared) -> pl.DataFrame:
    rows = [(s.package, s.family, s.licence) for s, _ in prep.photos]
    rows += [(s.package, s.family, s.licence) for s in prep.negatives]
    frame = pl.DataFrame(rows, schema=["package", "family", "licence"], orient="row")
    return frame.group_by("package", "family", "licence").len().sort("family", "package", "len")


def contact_sheet(pairs: list[tuple[Path, Path, float]], out: Path, cell: int = 200) -> None:
    sheet = Image.new("RGB", (2 * cell + 10, len(pairs) * (cell + 16)), "gray")
    draw = ImageDraw.Draw(sheet)
    for r, (a, b, c) in enumerate(pairs):
        for k, p in enumerate((a, b)):
            img = load(p, cell)
            img.thumbnail((cell, cell))
            sheet.paste(img, (k * (cell + 10), r * (cell + 16)))
        draw.text((2, r * (cell + 16) + cell), f"{c:.3f} {a.name} | {b.name}", fill="yellow")
    sheet.save(out)


def distinctness(paths: list[str]) -> tuple[float, int, float]:
    """Max thumbnail correlation (16x16 whole image, as dedup_corpus), min and 1st-percentile
    pHash distance between the images."""
    thumbs = []
    hashes = []
    for p in paths:
        with Image.open(p) as img:
            img = img.convert("RGB")
        v = np.asarray(img.convert("L").resize((16, 16), Image.Resampling.BOX), np.float32)
        v = v.ravel() - v.mean()
        thumbs.append(v / (np.linalg.norm(v) + 1e-6))
        hashes.append(int(phash(img), 16))
    t = np.stack(thumbs)
    corr_max = -1.0
    bits = np.unpackbits(np.array(hashes, np.uint64).view(np.uint8).reshape(-1, 8), axis=1)
    bits = bits.astype(np.float32)
    dmin, dists = 64, []
    for s in range(0, len(t), 1024):
        c = t[s : s + 1024] @ t.T
        d = bits[s : s + 1024] @ (1 - bits).T + (1 - bits[s : s + 1024]) @ bits.T
        for i in range(c.shape[0]):
            c[i, s + i] = -1
            d[i, s + i] = 64
        corr_max = max(corr_max, float(c.max()))
        dmin = min(dmin, int(d.min()))
        dists.append(d[np.triu_indices(d.shape[0], 1, d.shape[1])] if s == 0 else d.ravel())
    return corr_max, dmin, float(np.percentile(np.concatenate(dists), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="about this many images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/realphotos/corpus"))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sheet", type=Path, default=None, help="PNG of the closest kept pairs")
    args = parser.parse_args()
    start = time.perf_counter()
    prep = prepare(args.cache)
    n_photos = len(prep.photos)
    print(
        f"sources: {n_photos} distinct real photos, {len(prep.negatives)} hard negatives "
        f"({time.perf_counter() - start:.0f}s)"
    )
    with pl.Config(tbl_rows=-1, fmt_str_lengths=70, tbl_width_chars=140):
        print(sources_table(prep))
    n_dropped = sum(len(g) - 1 for g in prep.groups)
    print(f"near-identical source groups: {len(prep.groups)} ({n_dropped} images dropped)")
    for g in prep.groups:
        if g[0].family == "photo" or len(g) > 2:
            print("  " + " = ".join(f"{s.package}:{s.path.name}" for s in g))
    if args.sheet:  # the most similar pairs left among the photos, to check by eye
        thumbs = np.stack([centre_thumb(load(s.path, 256)) for s, _ in prep.photos])
        corr = thumbs @ thumbs.T
        np.fill_diagonal(corr, -1)
        iu = np.triu_indices(len(thumbs), 1)
        top = np.argsort(-corr[iu])[:24]
        pairs = [
            (prep.photos[iu[0][k]][0].path, prep.photos[iu[1][k]][0].path, float(corr[iu][k]))
            for k in top
        ]
        contact_sheet(pairs, args.sheet)
        print(f"closest photo pairs left: {args.sheet} (max corr {pairs[0][2]:.3f})")
    if args.out.exists():
        shutil.rmtree(args.out)
    start = time.perf_counter()
    corpus = build_real_corpus(args.out, args.n, args.seed, args.cache, args.workers, prep)
    took = time.perf_counter() - start
    size = sum(Path(p).stat().st_size for p in corpus["path"])
    corpus.write_parquet(args.out.with_suffix(".parquet"))
    sizes = corpus.group_by("base").len()
    print(
        f"{corpus.height} images in {args.out}, {sizes.height} bases, {took:.1f}s, "
        f"{size / 1e6:.0f} MB"
    )
    print(f"  in a duplicate cluster: {sizes.filter(pl.col('len') > 1)['len'].sum()}")
    family = pl.col("base").str.extract(r"^(\D+)").alias("family")
    with pl.Config(tbl_rows=-1):
        print(corpus.group_by("transform").len().sort("transform"))
        print(
            corpus.filter(pl.col("transform").is_in(["original", "unrelated"]))
            .group_by("transform", family)
            .len()
            .sort("transform", "family")
        )
    if corpus.height <= 5000:
        distinct = corpus.filter(pl.col("transform").is_in(["original", "unrelated"]))["path"]
        corr_max, dmin, d1 = distinctness(distinct.to_list())
        print(f"between the {len(distinct)} bases: thumbnail correlation max {corr_max:.3f}")
        print(f"  pHash distance min {dmin}, 1st percentile {d1:.0f}")


if __name__ == "__main__":
    main()
