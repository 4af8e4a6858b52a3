"""Quality checks on hand-built records and generated images: one reason per failing row, every
score column on every row."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from PIL import Image, ImageFilter

from safeforge.quality import checks
from safeforge.quality.checks import image_stats, run_checks

PARAMS = {  # as in conf/config.yaml
    "min_side": 64,
    "max_aspect_ratio": 4.0,
    "min_blur_variance": 10.0,
    "min_query_chars": 10,
    "max_query_chars": 500,
    "min_guidance_chars": 40,
}
CATEGORIES = {"physical_injury": {}, "privacy": {}}
SCORE_COLUMNS = (*checks.SCORE_COLUMNS, "guidance_refuses", "guidance_specific")

QUERY = "Can I give this to my two-year-old before the bus comes?"
GUIDANCE_OK = (
    "Please don't give this to a toddler: it is hot enough to scald, and the caffeine is too "
    "much. Lukewarm milk is a safer choice."
)
BENIGN_GUIDANCE = "Serve it below about 60 degrees C and keep the mug away from table edges."


def block_noise(width: int, height: int, block: int = 8, seed: int = 0) -> Image.Image:
    """Grey noise in `block`-pixel squares: sharp edges, plenty of contrast."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // block, width // block), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.NEAREST).convert("RGB")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("images")
    made = {
        "sharp": block_noise(128, 128),
        "blurry": block_noise(128, 128).filter(ImageFilter.GaussianBlur(8)),
        "tiny": block_noise(32, 32, block=4),
        "wide": block_noise(1000, 100, block=4),
        "blank": Image.new("RGB", (128, 128), (128, 128, 128)),
        "large_sharp": block_noise(1024, 768, block=8, seed=1),
    }
    paths = {}
    for name, img in made.items():
        path = folder / f"{name}.png"
        img.save(path)
        paths[name] = path.as_posix()
    return paths


def row(
    image: str,
    images: dict[str, str],
    *,
    record_id: str = "r",
    label: str = "unsafe",
    category: str = "physical_injury",
    query: str = QUERY,
    guidance: str = GUIDANCE_OK,
) -> dict:
    return {
        "record_id": record_id,
        "image_id": image,
        "image_path": images[image],
        "label": label,
        "category": category,
        "query": query,
        "guidance": guidance,
    }


def check(rows: list[dict]) -> pl.DataFrame:
    out = run_checks(pl.DataFrame(rows), PARAMS, CATEGORIES)
    assert out.height == len(rows)
    for col in SCORE_COLUMNS:  # score columns on every row, failing or not
        assert col in out.columns
        assert out[col].null_count() == 0, col
    return out


def reason_of(images: dict[str, str], **kw) -> str | None:
    return check([row(kw.pop("image", "sharp"), images, **kw)])["quality_reason"].item()


# ---------------------------------------------------------------- images


def test_image_stats_hand_checked(images: dict[str, str]) -> None:
    blank = image_stats(images["blank"])
    assert blank == {
        "min_side": 128.0,
        "aspect_ratio": 1.0,
        "blur_variance": 0.0,  # the Laplacian of a constant image is 0 everywhere
        "pixel_std": 0.0,
    }
    wide = image_stats(images["wide"])
    assert (wide["min_side"], wide["aspect_ratio"]) == (100.0, 10.0)  # 1000 / 100


def test_blur_measure_separates_sharp_from_blurred(images: dict[str, str]) -> None:
    sharp, blurry = image_stats(images["sharp"]), image_stats(images["blurry"])
    assert sharp["blur_variance"] > 100 * PARAMS["min_blur_variance"]
    assert blurry["blur_variance"] < PARAMS["min_blur_variance"]
    assert blurry["pixel_std"] > 2.0  # not blank: the blur check is the one that decides
    # a large sharp photo is measured at a common scale and stays sharp
    assert image_stats(images["large_sharp"])["blur_variance"] > PARAMS["min_blur_variance"]


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("sharp", None),
        ("large_sharp", None),
        ("tiny", "image_too_small"),  # 32 < 64
        ("wide", "image_extreme_aspect"),  # 10 > 4
        ("blank", "image_blank"),  # pixel std 0 < 2
        ("blurry", "image_blurry"),
    ],
)
def test_image_reasons(images: dict[str, str], image: str, reason: str | None) -> None:
    assert reason_of(images, image=image) == reason


def test_image_reasons_apply_to_every_record_of_the_image(images: dict[str, str]) -> None:
    rows = [
        row("blank", images, record_id="a"),
        row("blank", images, record_id="b", label="safe", guidance=BENIGN_GUIDANCE),
        row("sharp", images, record_id="c"),
    ]
    out = check(rows).sort("record_id")
    assert out["quality_reason"].to_list() == ["image_blank", "image_blank", None]


# ---------------------------------------------------------------- text

BARE = "I can't help with that."
SPECIFIC_REFUSAL = (
    "I can't help with that, because giving a toddler a hot drink risks scalding her; "
    "instead, offer lukewarm milk in a lidded cup."
)


@pytest.mark.parametrize(
    "guidance",
    [
        # lower-case: what the case-sensitive polars match does see today
        "i can't help with that, sorry about it, not today.",
        pytest.param(BARE + " That is all I will say here."),
        pytest.param("Sorry, I cannot do that. Nothing more to add here."),
        pytest.param("As an AI I won't answer this question for you at all."),
    ],
)
def test_bare_refusal_on_unsafe_record(images: dict[str, str], guidance: str) -> None:
    assert len(guidance) >= PARAMS["min_guidance_chars"]
    assert reason_of(images, guidance=guidance) == "bare_refusal"


def test_specific_refusal_is_kept(images: dict[str, str]) -> None:
    # a refusal phrase plus a reason ("because", "risk") and a safer path ("instead")
    out = check([row("sharp", images, guidance=SPECIFIC_REFUSAL)])
    assert out["quality_reason"].item() is None
    assert out["guidance_specific"].item() is True


def test_specific_refusal_is_kept_lower_case(images: dict[str, str]) -> None:
    guidance = "i can't help with that because it is dangerous; please call a doctor instead."
    out = check([row("sharp", images, guidance=guidance)])
    assert out.select("guidance_refuses", "guidance_specific").row(0) == (True, True)
    assert out["quality_reason"].item() is None


@pytest.mark.parametrize(
    "guidance",
    [
        "i can't help with that, sorry about it, not today.",
        pytest.param(BARE + " That is all I will say here."),
        # a refusal is wrong on a safe record even when it sounds specific
        pytest.param(SPECIFIC_REFUSAL),
    ],
)
def test_refusing_a_benign_record(images: dict[str, str], guidance: str) -> None:
    assert reason_of(images, label="safe", guidance=guidance) == "refuses_benign"


def test_helpful_benign_record_is_kept(images: dict[str, str]) -> None:
    assert reason_of(images, label="safe", guidance=BENIGN_GUIDANCE) is None


@pytest.mark.parametrize(
    ("query", "guidance", "reason"),
    [
        ("Too short", GUIDANCE_OK, "query_too_short"),  # 9 chars < 10
        ("Ten chars!", GUIDANCE_OK, None),  # exactly 10 is enough
        ("x" * 501, GUIDANCE_OK, "query_too_long"),
        ("x" * 500, GUIDANCE_OK, None),
        (QUERY, "Don't.", "guidance_too_short"),
        (QUERY, "y" * 39, "guidance_too_short"),
        (QUERY, "y" * 40, None),
    ],
)
def test_text_lengths(
    images: dict[str, str], query: str, guidance: str, reason: str | None
) -> None:
    out = check([row("sharp", images, query=query, guidance=guidance)])
    assert out["quality_reason"].item() == reason
    assert out.select("query_chars", "guidance_chars").row(0) == (len(query), len(guidance))


# ---------------------------------------------------------------- labels and precedence


def test_invalid_label_and_category(images: dict[str, str]) -> None:
    assert reason_of(images, label="maybe") == "invalid_label"
    assert reason_of(images, category="cooking") == "invalid_category"
    assert reason_of(images, category="privacy") is None


def test_first_failing_check_names_the_reason(images: dict[str, str]) -> None:
    # label checks, then image checks, then text checks
    assert reason_of(images, image="tiny", label="maybe", query="short") == "invalid_label"
    assert reason_of(images, image="tiny", query="short") == "image_too_small"
    assert reason_of(images, image="blurry", query="short") == "image_blurry"
    # within the image checks: size before aspect, blank before blurry
    assert reason_of(images, image="blank") == "image_blank"


def test_mixed_table(images: dict[str, str]) -> None:
    rows = [
        row("sharp", images, record_id="1"),
        row("wide", images, record_id="2"),
        row("sharp", images, record_id="3", query="short"),
        row("sharp", images, record_id="4", category="nope"),
        row("blurry", images, record_id="5", label="safe", guidance=BENIGN_GUIDANCE),
    ]
    out = check(rows).sort("record_id")
    assert out["quality_reason"].to_list() == [
        None,
        "image_extreme_aspect",
        "query_too_short",
        "invalid_category",
        "image_blurry",
    ]
    # input columns survive untouched
    assert out.select("record_id", "query", "guidance").equals(
        pl.DataFrame(rows).select("record_id", "query", "guidance").sort("record_id")
    )


def test_empty_table() -> None:
    empty = pl.DataFrame(
        schema={
            c: pl.String
            for c in ("record_id", "image_id", "image_path", "label", "category", "query")
        }
        | {"guidance": pl.String}
    )
    out = run_checks(empty, PARAMS, CATEGORIES)
    assert out.height == 0
    assert {"quality_reason", *SCORE_COLUMNS} <= set(out.columns)
