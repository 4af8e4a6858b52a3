"""ClueConfig: the judge's config section (conf/judge/clue.yaml), checked key by key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from safeforge.config import check_keys


@dataclass(frozen=True)
class RelevanceConfig:
    clip_model: str | None = None  # local CLIP-type folder; None: MiniLM on the description
    top_k: int = 5  # at most this many rules are checked per item
    min_similarity: float = 0.2  # cosine; set per encoder (paper: 0.22 for CLIP ViT-B/16)
    describe_max_tokens: int = 128  # the MLLM's description (MiniLM path only)


@dataclass(frozen=True)
class DebiasConfig:
    no_image_weight: float = 1.0  # w0: 1 = the paper's no-image prior, 0 = neutral 0.5
    centre_weight: float = 4 / 3  # wc = 0.8 / 0.6; 0 = no centre-removed query


@dataclass(frozen=True)
class FallbackConfig:
    enabled: bool = True
    max_tokens: int = 256  # the step-by-step reasoning
    summary_max_tokens: int = 96  # the JSON summary


@dataclass(frozen=True)
class ClueConfig:
    backend: dict[str, Any]
    constitution: str = "default"
    taxonomy: str = "default"
    relevance: RelevanceConfig = field(default_factory=RelevanceConfig)
    debias: DebiasConfig = field(default_factory=DebiasConfig)
    centre_fraction: float = 0.5
    hold_threshold: float = 0.8
    reject_threshold: float = -0.3
    fallback: FallbackConfig = field(default_factory=FallbackConfig)
    batch_size: int = 64

    SECTIONS: ClassVar[dict[str, type]] = {
        "relevance": RelevanceConfig,
        "debias": DebiasConfig,
        "fallback": FallbackConfig,
    }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ClueConfig:
        params = _plain(params)
        check_keys("judge (clue)", params, [f.name for f in fields(cls)])
        if not isinstance(params.get("backend"), Mapping) or "backend" not in params["backend"]:
            raise KeyError(
                "judge (clue): `backend` must be a backend section with a `backend:` name "
                "(the format of conf/generator/hf.yaml)"
            )
        kwargs = dict(params)
        for name, section in cls.SECTIONS.items():
            if name in kwargs:
                value = kwargs[name] or {}
                check_keys(f"judge (clue).{name}", value, [f.name for f in fields(section)])
                kwargs[name] = section(**value)
        config = cls(**kwargs)
        config.validate()
        return config

    def validate(self) -> None:
        r, h = self.reject_threshold, self.hold_threshold
        if not -1.0 <= r < h <= 1.0:
            raise ValueError(
                f"judge (clue): need -1 <= reject_threshold < hold_threshold <= 1, got {r}, {h}"
            )
        if not 0.0 < self.centre_fraction < 1.0:
            raise ValueError(f"judge (clue): centre_fraction={self.centre_fraction}, want (0, 1)")
        if not 0.0 <= self.debias.no_image_weight <= 1.0 or self.debias.centre_weight < 0:
            raise ValueError(
                "judge (clue): debias.no_image_weight must be in [0, 1] and centre_weight >= 0"
            )
        if self.relevance.top_k < 1 or self.batch_size < 1:
            raise ValueError("judge (clue): relevance.top_k and batch_size must be >= 1")

    def to_params(self) -> dict[str, Any]:
        return asdict(self)


def _plain(value: Any) -> Any:
    """Plain dicts and lists all the way down (params may be Params/OmegaConf mappings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
