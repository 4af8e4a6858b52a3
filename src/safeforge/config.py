"""conf/ (hydra) is the source of truth; params.yaml is its composition, which DVC reads.

`safeforge params` rewrites params.yaml from conf/ (DVC does the same on `dvc exp run -S`).
Stages read params through `stage_params`, which hands a stage only the sections it declared,
so the keys listed in dvc.yaml are the keys the stage can see.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parents[2]  # the repository (src/safeforge/ -> ../..)
# the score item that is the dataset's own test split: scored like a benchmark (conf/benchmarks/),
# never part of the transfer score
OWN_TEST = "own_test"
T = TypeVar("T")


def compose(conf_dir: str | Path = ROOT / "conf", overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose conf/config.yaml with hydra, as `dvc exp run -S` does, into a plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def dump(params: dict[str, Any]) -> str:
    return yaml.safe_dump(
        params, sort_keys=False, default_flow_style=False, width=100, allow_unicode=True
    )


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; run `safeforge params` to compose it from conf/")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


class Params(dict):
    """A section of params; a missing key fails naming the section and the keys it has."""

    def __init__(self, name: str, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.name = name

    def __getitem__(self, key: str) -> Any:
        try:
            value = super().__getitem__(key)
        except KeyError:
            raise KeyError(
                f"params key '{self.name}.{key}' is missing (params.yaml has: {sorted(self)}); "
                "check conf/ and rerun `safeforge params`"
            ) from None
        return Params(f"{self.name}.{key}", value) if isinstance(value, dict) else value


def stage_params(
    sections: Sequence[str], path: str | Path = "params.yaml", item: str | None = None
) -> dict[str, Any]:
    """The declared sections of params.yaml, and nothing else.

    A section may be a dotted key (`benchmarks.siuo`), and in a `foreach` stage may hold
    `${item}`, as in dvc.yaml (`benchmarks.${item}`): `item` fills it in. Any other `${key}`
    is that params value, as DVC interpolates it (`evaluate.models.${evaluate.model}`).
    """
    params = load_params(path)
    out: dict[str, Any] = {}
    for section in sections:
        key = _PLACEHOLDER.sub(lambda m: _interpolate(m.group(1), params, item, path), section)
        value = _lookup(params, key, f"{path}: section {key!r}")
        out[key] = Params(key, value) if isinstance(value, dict) else value
    return out


def _lookup(params: dict[str, Any], dotted: str, what: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"{what} is missing; check conf/ and `safeforge params`")
        value = value[part]
    return value


_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


def _interpolate(name: str, params: dict[str, Any], item: str | None, path: str | Path) -> str:
    if name == "item":
        if item is None:
            raise KeyError("${item} is only known in a foreach stage: pass item=")
        return item
    value = _lookup(params, name, f"{path}: ${{{name}}}")
    if isinstance(value, (dict, list)) or value is None:
        raise KeyError(f"{path}: ${{{name}}} is {value!r}, not a name to put in a section key")
    return str(value)


def check_keys(where: str, params: Mapping[str, Any], known: Iterable[str]) -> None:
    """A misspelt config key fails loudly, naming it and the keys that exist."""
    unknown = set(params) - set(known)
    if unknown:
        raise KeyError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")


def require_keys(where: str, params: Mapping[str, Any], required: Iterable[str]) -> None:
    """Every key is set: conf/ holds each default once and code never repeats it, so a missing
    key fails loudly, naming the section and the key."""
    missing = [k for k in required if k not in params]
    if missing:
        raise KeyError(
            f"{where}: missing keys {missing}; conf/ sets each one (a section composed from conf/ "
            "has them all; check conf/ and rerun `safeforge params`)"
        )


def from_section(cls: type[T], where: str, params: Mapping[str, Any]) -> T:
    """A config dataclass from its conf section: every field is set there, no key is unknown."""
    names = [f.name for f in fields(cls) if f.init]  # type: ignore[arg-type]
    check_keys(where, params, names)
    require_keys(where, params, names)
    return cls(**{name: params[name] for name in names})
