"""An image corpus with known duplicate clusters, for the image-dedup benchmark.

Bases are the photos bundled in scikit-image plus procedurally generated images (mosaics of
crops of those photos with flips and colour shifts; shapes on gradients), each kept only if its
16x16 grey thumbnail, and its mirror image's, correlates at most 0.6 with every earlier base's:
all bases are visually distinct. About half the corpus is clusters: a base and three copies made
with PIL (resize, JPEG re-encode, crop, brightness, rotation, overlaid caption), each transform
equally often. The rest is bases with no copies and "unrelated" distractors (smooth random
colour fields: distinct, but all alike in kind). A base's id starts with its family: photo,
mosaic, shapes or noise. Deterministic for a seed; main() prints counts and distinctness.

    python benchmarks/dedup_corpus.py [--n 2000] [--seed 0] [--out /tmp/dedup_corpus]
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from safeforge.images.phash import phash
from safeforge.sources.skimage_samples import bundled_samples

TRANSFORMS = ("resize", "jpeg", "crop", "brightness", "rotate", "text")
COPIES_PER_CLUSTER = 3
MAX_THUMB_CORR = 0.6  # bases whose normalised 16x16 thumbnails correlate more are "alike"
# a stereo pair: the right view is nearly the left one, so only one of them can be a base
SKIP_PHOTOS = {"motorcycle_right.png"}
CAPTIONS = ("when you see it", "not again", "monday mood", "wait for it", "100% real", "lol")


def photos() -> list[Image.Image]:
    import skimage

    data_dir = Path(skimage.__file__).parent / "data"
    out = []
    for s in bundled_samples():
        if s.file not in SKIP_PHOTOS:
            with Image.open(data_dir / s.file) as img:
                out.append(img.convert("RGB"))
    return out


def mosaic(rng: random.Random, sources: list[Image.Image]) -> Image.Image:
    """Irregular grid of crops of random photos, each flipped and colour-shifted at random."""
    w, h = rng.randint(320, 560), rng.randint(240, 480)
    canvas = Image.new("RGB", (w, h))
    cols, rows = rng.choice(((1, 2), (2, 1), (2, 2), (2, 3), (3, 2), (3, 3)))
    xs = [0, *sorted(rng.sample(range(w // 5, w - w // 5), cols - 1)), w]
    ys = [0, *sorted(rng.sample(range(h // 5, h - h // 5), rows - 1)), h]
    for x0, x1 in itertools.pairwise(xs):
        for y0, y1 in itertools.pairwise(ys):
            src = rng.choice(sources)
            # at most 60% of a photo's side: no tile is a near copy of a whole bundled photo
            cw = rng.randint(min(48, src.width), int(src.width * 0.6))
            ch = rng.randint(min(48, src.height), int(src.height * 0.6))
            left, top = rng.randint(0, src.width - cw), rng.randint(0, src.height - ch)
            tile = src.crop((left, top, left + cw, top + ch)).resize((x1 - x0, y1 - y0))
            if rng.random() < 0.5:
                tile = ImageOps.mirror(tile)
            if rng.random() < 0.3:
                tile = ImageOps.flip(tile)
            gains = np.array([rng.uniform(0.6, 1.4) for _ in range(3)], np.float32)
            arr = np.clip(np.asarray(tile, np.float32) * gains + rng.uniform(-30, 30), 0, 255)
            canvas.paste(Image.fromarray(arr.astype(np.uint8)), (x0, y0))
    return canvas


def shapes(rng: random.Random) -> Image.Image:
    """A linear gradient between two random colours with 6-24 random shapes over it."""
    w, h = rng.randint(256, 512), rng.randint(256, 512)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * np.cos(angle) + yy * np.sin(angle)) / (w + h)
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    c0, c1 = np.array(rng.choices(range(256), k=3)), np.array(rng.choices(range(256), k=3))
    img = Image.fromarray((c0 + t[..., None] * (c1 - c0)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(6, 24)):
        x0, y0 = rng.randint(-w // 4, w), rng.randint(-h // 4, h)
        box = (x0, y0, x0 + rng.randint(w // 10, w // 2), y0 + rng.randint(h // 10, h // 2))
        fill = tuple(rng.choices(range(256), k=3))
        kind = rng.choice(("ellipse", "rectangle", "polygon", "line"))
        if kind == "ellipse":
            draw.ellipse(box, fill=fill)
        elif kind == "rectangle":
            draw.rectangle(box, fill=fill)
        elif kind == "line":
            draw.line(box, fill=fill, width=rng.randint(3, 20))
        else:
            pts = [(rng.randint(0, w), rng.randint(0, h)) for _ in range(rng.randint(3, 6))]
            draw.polygon(pts, fill=fill)
    return img


def noise_field(rng: random.Random) -> Image.Image:
    """Smooth random colour field: coarse Gaussian noise upsampled bicubically."""
    w, h = rng.randint(256, 512), rng.randint(256, 512)
    g = np.random.default_rng(rng.getrandbits(32))
    coarse = g.integers(0, 256, (rng.randint(3, 12), rng.randint(3, 12), 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
    fine = g.normal(0, rng.uniform(0, 12), (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + fine, 0, 255).astype(np.uint8))


def thumb(img: Image.Image) -> np.ndarray:
    v = np.asarray(img.convert("L").resize((16, 16), Image.Resampling.BOX), np.float32).ravel()
    v = v - v.mean()
    return v / (np.linalg.norm(v) + 1e-6)


def transformed(img: Image.Image, transform: str, rng: random.Random) -> tuple[Image.Image, str]:
    """A copy of `img` under `transform` and its parameter, e.g. ("q=50")."""
    w, h = img.size
    if transform == "resize":
        s = rng.choice((0.5, 0.75))
        return img.resize((round(w * s), round(h * s)), Image.Resampling.BICUBIC), f"scale={s}"
    if transform == "jpeg":
        return img, f"q={rng.choice((90, 70, 50))}"  # encoded at save time
    if transform == "crop":
        f = rng.choice((0.02, 0.03, 0.04, 0.05))
        box = (round(w * f), round(h * f), w - round(w * f), h - round(h * f))
        return img.crop(box).resize((w, h), Image.Resampling.BICUBIC), f"crop={f}"
    if transform == "brightness":
        b = rng.choice((0.85, 1.15))
        return ImageEnhance.Brightness(img).enhance(b), f"x{b}"
    if transform == "rotate":
        d = rng.choice((-3, -2.5, -2, 2, 2.5, 3))
        return img.rotate(d, Image.Resampling.BICUBIC, expand=False), f"deg={d}"
    if transform == "text":
        out, caption = img.copy(), rng.choice(CAPTIONS)
        draw = ImageDraw.Draw(out)
        font = ImageFont.load_default(size=max(12, h // 12))
        where = rng.choice(("top", "bottom"))
        xy = (rng.randint(4, max(5, w // 3)), 4 if where == "top" else h - h // 12 - 8)
        draw.text(xy, caption, fill="white", font=font, stroke_width=2, stroke_fill="black")
        return out, f"caption@{where}"
    raise ValueError(transform)


def distinct_images(
    n: int, make: Callable[[], Image.Image], taken: list[np.ndarray]
) -> list[Image.Image]:
    """`n` images from `make` whose thumbnail, and its mirror image's, is uncorrelated with all
    those in `taken` (the new ones are appended)."""
    out: list[Image.Image] = []
    while len(out) < n:
        img = make()
        t = thumb(img)
        both = np.stack([t, thumb(ImageOps.mirror(img))])
        if taken and float(np.max(np.stack(taken) @ both.T)) > MAX_THUMB_CORR:
            continue
        taken.append(t)
        out.append(img)
    return out


def build_corpus(out_dir: Path, n_images: int, seed: int = 0) -> pl.DataFrame:
    """Write ~n_images files into out_dir; one row per file: path, base, transform, param."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = photos()
    n_clusters = max(1, round(n_images * 0.5 / (1 + COPIES_PER_CLUSTER)))
    n_single = max(0, n_images - n_clusters * (1 + COPIES_PER_CLUSTER))
    n_bases = n_clusters + n_single - n_single // 2
    taken: list[np.ndarray] = []
    bases = [("photo", img) for img in distinct_images(len(sources), iter(sources).__next__, taken)]
    makers = (("mosaic", lambda: mosaic(rng, sources)), ("shapes", lambda: shapes(rng)))
    while len(bases) < n_bases:  # alternate the two families, one distinct image at a time
        family, make = makers[len(bases) % 2]
        bases += [(family, img) for img in distinct_images(1, make, taken)]
    rng.shuffle(bases)
    unrelated = distinct_images(n_single // 2, lambda: noise_field(rng), taken)

    items: list[tuple[Image.Image, str, str, str]] = []  # image, base, transform, param
    cycle: list[str] = []
    for b, (family, img) in enumerate(bases):
        base = f"{family}{b:05d}"  # the family in the id: false merges can be told apart
        items.append((img, base, "original", ""))
        if b >= n_clusters:
            continue
        for _ in range(COPIES_PER_CLUSTER):
            if not cycle:  # each transform equally often, in a shuffled order
                cycle = list(TRANSFORMS)
                rng.shuffle(cycle)
            transform = cycle.pop()
            copy, param = transformed(img, transform, rng)
            items.append((copy, base, transform, param))
    for u, img in enumerate(unrelated):
        items.append((img, f"noise{u:05d}", "unrelated", ""))

    order = list(range(len(items)))
    rng.shuffle(order)  # cluster members are not neighbours on disk
    rows = []
    for i, k in enumerate(order):
        img, base, transform, param = items[k]
        if transform == "jpeg":
            path = out_dir / f"img{i:05d}.jpg"
            img.save(path, quality=int(param[2:]))
        else:
            path = out_dir / f"img{i:05d}.png"
            img.save(path, compress_level=1)
        rows.append({"path": str(path), "base": base, "transform": transform, "param": param})
    return pl.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="about this many images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/dedup_corpus"))
    args = parser.parse_args()
    corpus = build_corpus(args.out, args.n, args.seed)
    sizes = corpus.group_by("base").len()
    print(f"{corpus.height} images in {args.out}, {sizes.height} bases")
    print(f"  in a duplicate cluster: {sizes.filter(pl.col('len') > 1)['len'].sum()}")
    with pl.Config(tbl_rows=-1):
        print(corpus.group_by("transform", "param").len().sort("transform", "param"))
    distinct = corpus.filter(pl.col("transform").is_in(["original", "unrelated"]))["path"]
    thumbs = np.stack([thumb(Image.open(p)) for p in distinct])
    corr = thumbs @ thumbs.T
    np.fill_diagonal(corr, -1)
    hashes = np.array([int(phash(Image.open(p)), 16) for p in distinct], np.uint64)
    bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1).astype(np.int32)
    dist = bits @ (1 - bits).T + (1 - bits) @ bits.T
    np.fill_diagonal(dist, 64)
    print(f"between the {len(distinct)} bases: thumbnail correlation max {corr.max():.3f}")
    print(f"  pHash distance min {dist.min()}, 1st percentile {np.percentile(dist, 1):.0f}")


if __name__ == "__main__":
    main()
