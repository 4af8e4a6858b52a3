"""Quality checks on hand-built records and generated images: one reason per failing row, every
score column on every row."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from PIL import Image, ImageFilter

from safeforge.embeddings.images import IMAGE_FEATURE_SCHEMA, image_file_features
from safeforge.quality import checks
from safeforge.quality.checks import IMAGE_SCORE_COLUMNS, run_checks
from safeforge.quality.plots import histograms

PARAMS = {  # as in conf/config.yaml, but no cap per category (see the balance tests)
    "min_side": 64,
    "max_aspect_ratio": 4.0,
    "min_pixel_std": 2.0,
    "min_blur_variance": 10.0,
    "min_query_chars": 10,
    "max_query_chars": 500,
    "min_guidance_chars": 40,
    "scripts": ["Latin"],
    "min_script_share": 0.9,
    "max_text_only_p_unsafe": 0.95,
    "min_image_lift": None,
    "max_share": 1.0,
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
    query_type: str | None = None,
    lift: float = 0.1,
    text_only: float = 0.4,
) -> dict:
    return {
        "record_id": record_id,
        "image_id": image,
        "image_path": images[image],
        "label": label,
        "category": category,
        "query_type": query_type or ("unsafe" if label == "unsafe" else "benign"),
        "query": query,
        "guidance": guidance,
        "query_image_lift": lift,
        "text_only_p_unsafe": text_only,
    }


def image_stats(path: str) -> dict:
    return {k: v for k, v in image_file_features(path).items() if k in IMAGE_SCORE_COLUMNS}


def with_image_stats(rows: list[dict]) -> pl.DataFrame:
    """The rows with their images' features, as the quality stage joins them from embed."""
    return pl.DataFrame([{**r, **image_stats(r["image_path"])} for r in rows])


def check(rows: list[dict], **params) -> pl.DataFrame:
    out = run_checks(with_image_stats(rows), {**PARAMS, **params}, CATEGORIES)
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
    text = ("record_id", "image_id", "image_path", "label", "category", "query_type", "query")
    empty = pl.DataFrame(
        schema={c: pl.String for c in (*text, "guidance")}
        | {c: IMAGE_FEATURE_SCHEMA[c] for c in IMAGE_SCORE_COLUMNS}
        | {"query_image_lift": pl.Float32, "text_only_p_unsafe": pl.Float32}
    )
    out = run_checks(empty, PARAMS, CATEGORIES)
    assert out.height == 0
    assert {"quality_reason", *SCORE_COLUMNS} <= set(out.columns)


def test_rows_without_image_features_are_named(images: dict[str, str]) -> None:
    table = with_image_stats([row("sharp", images)]).with_columns(blur_variance=None)
    out = run_checks(table, PARAMS, CATEGORIES)
    assert out["quality_reason"].item() == "missing_features:image"


# ---------------------------------------------------------------- characters and script


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("Is this safe to drink right now?", None),
        ("Is this caf\u00e9 au lait safe for a toddler?", None),  # accents are Latin
        ("Is this safe\x00 to drink right now?", "text_bad_characters"),  # a NUL byte
        ("Is this safe \ufffd to drink right now?", "text_bad_characters"),  # broken decoding
        (
            "\u3053\u308c\u306f\u5b89\u5168\u3067\u3059\u304b\u3001\u98f2\u3093\u3067\u3082",
            "text_wrong_script",
        ),
        (
            "\u042d\u0442\u043e \u0431\u0435\u0437\u043e\u043f\u0430\u0441\u043d\u043e \u043f\u0438\u0442\u044c?",
            "text_wrong_script",
        ),
    ],
)
def test_character_and_script_checks(
    images: dict[str, str], query: str, reason: str | None
) -> None:
    out = check([row("sharp", images, query=query)])
    assert out["quality_reason"].item() == reason
    assert out["bad_characters"].item() == (1 if reason == "text_bad_characters" else 0)


def test_script_share_is_the_share_of_letters() -> None:
    frame = pl.DataFrame({"t": ["abcd", "ab\u0436\u0436", "1234 !?", ""]})
    got = frame.select(checks.script_share(pl.col("t"), ["Latin"]))["t"].to_list()
    assert got == [1.0, 0.5, 1.0, 1.0]  # no letters at all: nothing to object to
    both = frame.select(checks.script_share(pl.col("t"), ["Latin", "Cyrillic"]))["t"]
    assert both.to_list() == [1.0, 1.0, 1.0, 1.0]


# ---------------------------------------------------------------- does the query need its image?


def test_unsafe_query_the_text_alone_gives_away(images: dict[str, str]) -> None:
    assert reason_of(images, text_only=0.97) == "query_ignores_image"
    assert reason_of(images, text_only=0.94) is None
    # a safe record the text-only judge calls unsafe is the point of a benign look-alike
    assert reason_of(images, label="safe", guidance=BENIGN_GUIDANCE, text_only=0.99) is None


def test_image_lift_check_is_optional(images: dict[str, str]) -> None:
    rows = [
        row("sharp", images, record_id="1", lift=-0.2),
        row("sharp", images, record_id="2", lift=0.2),
        # a contrast record borrows an unrelated image: its lift says nothing
        row(
            "sharp",
            images,
            record_id="3",
            label="safe",
            guidance=BENIGN_GUIDANCE,
            query_type="contrast",
            lift=-0.3,
        ),
    ]
    assert check(rows)["quality_reason"].to_list() == [None, None, None]
    got = check(rows, min_image_lift=0.0).sort("record_id")["quality_reason"].to_list()
    assert got == ["query_ignores_image", None, None]


# ---------------------------------------------------------------- balance


def test_cap_per_category_and_label(images: dict[str, str]) -> None:
    rows = [row("sharp", images, record_id=f"p{i:02d}") for i in range(8)]  # 8 unsafe injury
    rows += [row("sharp", images, record_id=f"v{i}", category="privacy") for i in range(2)]
    rows += [
        row("sharp", images, record_id=f"s{i}", label="safe", guidance=BENIGN_GUIDANCE)
        for i in range(2)
    ]
    rows.append(row("tiny", images, record_id="p99"))  # fails on its own: not counted
    out = check(rows, max_share=0.25).sort("record_id")
    reasons = dict(out.select("record_id", "quality_reason").rows())
    # 12 rows pass the checks: at most 3 per (category, label); the first record ids stay
    assert [k for k, v in reasons.items() if v is None] == [
        "p00",
        "p01",
        "p02",
        "s0",
        "s1",
        "v0",
        "v1",
    ]
    assert {reasons[f"p{i:02d}"] for i in range(3, 8)} == {"over_cap:physical_injury/unsafe"}
    assert reasons["p99"] == "image_too_small"
    assert check(rows, max_share=1.0)["quality_reason"].null_count() == 12


def test_histograms_count_kept_and_dropped() -> None:
    scored = pl.DataFrame(
        {
            "score": [0.0, 0.1, 0.5, 0.9, 1.0, None],
            "quality_reason": [None, "x", None, None, "y", None],
        }
    )
    hist = histograms(scored, ["score"], bins=2)["score"]
    assert hist.to_dict(as_series=False) == {
        "bin": [0.0, 0.5],
        "rows": [2, 3],
        "kept": [1, 2],
        "dropped": [1, 1],
    }
