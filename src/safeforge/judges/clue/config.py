"""ClueConfig: the judge's config section (conf/judge/clue.yaml), checked key by key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from safeforge.config import check_keys, from_section, require_keys

WHERE = "judge (clue)"


# Every value comes from conf/judge/clue.yaml; the fields only type it (no defaults here).
@dataclass(frozen=True)
class RelevanceConfig:
    clip_model: str | None  # local CLIP-type folder; None: MiniLM on the description
    top_k: int  # at most this many rules are checked per item
    min_similarity: float  # cosine; set per encoder (paper: 0.22 for CLIP ViT-B/16)
    describe_max_tokens: int  # the MLLM's description (MiniLM path only)


@dataclass(frozen=True)
class DebiasConfig:
    no_image_weight: float  # w0: 1 = the paper's no-image prior, 0 = neutral 0.5
    centre_weight: float  # wc; 0.8 / 0.6 is the paper's; 0 = no centre-removed query


@dataclass(frozen=True)
class FallbackConfig:
    enabled: bool
    max_tokens: int  # the step-by-step reasoning
    summary_max_tokens: int  # the JSON summary


@dataclass(frozen=True)
class ClueConfig:
    backend: dict[str, Any]
    constitution: str
    taxonomy: str
    relevance: RelevanceConfig
    debias: DebiasConfig
    centre_fraction: float
    hold_threshold: float
    reject_threshold: float
    fallback: FallbackConfig
    batch_size: int

    SECTIONS: ClassVar[dict[str, type]] = {
        "relevance": RelevanceConfig,
        "debias": DebiasConfig,
        "fallback": FallbackConfig,
    }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ClueConfig:
        """The judge's section without "kind"; a key missing or misspelt raises KeyError."""
        params = _plain(params)
        names = [f.name for f in fields(cls)]
        check_keys(WHERE, params, names)
        require_keys(WHERE, params, names)
        if not isinstance(params["backend"], Mapping) or "backend" not in params["backend"]:
            raise KeyError(
                f"{WHERE}: `backend` must be a backend section with a `backend:` name "
                "(the format of conf/generator/hf.yaml)"
            )
        kwargs = dict(params)
        for name, section in cls.SECTIONS.items():
            if not isinstance(kwargs[name], Mapping):
                raise KeyError(f"{WHERE}.{name}: a section of keys, got {kwargs[name]!r}")
            kwargs[name] = from_section(section, f"{WHERE}.{name}", kwargs[name])
        config = cls(**kwargs)
        config.validate()
        return config

    def validate(self) -> None:
        r, h = self.reject_threshold, self.hold_threshold
        if not -1.0 <= r < h <= 1.0:
            raise ValueError(
                f"{WHERE}: need -1 <= reject_threshold < hold_threshold <= 1, got {r}, {h}"
            )
        if not 0.0 < self.centre_fraction < 1.0:
            raise ValueError(f"{WHERE}: centre_fraction={self.centre_fraction}, want (0, 1)")
        if not 0.0 <= self.debias.no_image_weight <= 1.0 or self.debias.centre_weight < 0:
            raise ValueError(
                f"{WHERE}: debias.no_image_weight must be in [0, 1] and centre_weight >= 0"
            )
        if self.relevance.top_k < 1 or self.batch_size < 1:
            raise ValueError(f"{WHERE}: relevance.top_k and batch_size must be >= 1")

    def to_params(self) -> dict[str, Any]:
        return asdict(self)


def _plain(value: Any) -> Any:
    """Plain dicts and lists all the way down (params may be Params/OmegaConf mappings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
