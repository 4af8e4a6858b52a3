"""The RMS prompt chain on a chat backend: describe -> analyse -> queries -> guidance (-> contrast).

Each step is one batched round through the backend and the row cache, so vLLM sees whole
batches and a server sees `concurrency` requests in flight. Prompt text (conf/prompts/) is in
every request and so in every cache key; a step's inputs include the replies it builds on, so
an edit to one step's prompt regenerates that step and the steps after it, nothing else.

A reply that is not usable (see replies.REASONS) is retried once with the problem named; if it
fails again it is given up, kept in `Chat.failures` with its reason and text, and counted.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from safeforge.backends import make_backend
from safeforge.backends.base import Backend, ChatRequest, Reply, Sampling
from safeforge.backends.cached import cached_complete
from safeforge.cache import RowCache
from safeforge.chain.replies import ReplyProblem, check_reply

# the placeholders each step's template may use
FIELDS = {
    "describe": set(),
    "analyse": {"description", "categories", "top_k"},
    "queries": {"description", "scenario", "category", "risk_analysis"},
    "guidance": {
        "description",
        "scenario",
        "category",
        "risk_analysis",
        "unsafe_query",
        "benign_query",
    },
    "contrast": {"description", "category", "unsafe_query"},
    "retry": {"problem"},
}


@dataclass(frozen=True)
class Prompts:
    version: str
    system: str
    templates: Mapping[str, str]  # step (and "retry") -> template

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Prompts:
        """A conf/prompts/<version>.yaml section; errors name the step and the placeholder."""
        known = {"version", "system", *FIELDS}
        missing = sorted(k for k in known if k != "describe" and not params.get(k))
        unknown = sorted(set(params) - known)
        if missing or unknown:
            raise ValueError(
                f"prompts: missing {missing}, unknown {unknown} (known: {sorted(known)})"
            )
        for step, allowed in FIELDS.items():
            used = {f for _, f, _, _ in string.Formatter().parse(params.get(step) or "") if f}
            if used - allowed:
                raise ValueError(
                    f"prompts.{step}: unknown placeholders {sorted(used - allowed)} "
                    f"(this step has {sorted(allowed)}; write literal braces as {{{{ }}}})"
                )
        templates = {k: params[k] for k in FIELDS if params.get(k)}
        return cls(str(params["version"]), params["system"], templates)


def open_chat(
    backend_params: Mapping[str, Any], prompts: Prompts, cache: RowCache, batch_size: int
) -> Chat:
    """A Chat on the backend a `generator:` or `describe.vlm:` section names."""

    backend = make_backend(backend_params)  # fails first on a missing or misspelt key
    where = f"{backend_params['backend']} backend.sampling"
    return Chat(
        backend, prompts, cache, Sampling.from_params(backend_params["sampling"], where), batch_size
    )


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


TEXT = {"type": "string", "minLength": 1}
DESCRIBE_SCHEMA = _object({"description": TEXT})


def step_schemas(categories: Sequence[str], top_k: int) -> dict[str, dict[str, Any]]:
    risk = _object(
        {
            "scenario": TEXT,
            "category": {"type": "string", "enum": list(categories)},
            "analysis": TEXT,
        }
    )
    return {
        "describe": DESCRIBE_SCHEMA,
        "analyse": _object({"risks": {"type": "array", "items": risk, "maxItems": top_k}}),
        "queries": _object(
            {"unsafe_query": TEXT, "benign_query": TEXT, "image_dependent": {"type": "boolean"}}
        ),
        "guidance": _object({"unsafe_guidance": TEXT, "benign_guidance": TEXT}),
        "contrast": _object({"harmless": {"type": "boolean"}, "guidance": TEXT}),
    }


@dataclass(frozen=True)
class Ask:
    """One question of a step: what it is about (for failure reports), its fields, its images."""

    item_id: str
    fields: Mapping[str, Any]
    images: tuple[str, ...] = ()


class Chat:
    def __init__(
        self,
        backend: Backend,
        prompts: Prompts,
        cache: RowCache,
        sampling: Sampling,
        batch_size: int,
    ) -> None:
        self.backend, self.prompts, self.cache = backend, prompts, cache
        self.sampling, self.batch_size = sampling, batch_size
        self.failures: list[dict[str, str]] = []
        self.retried: Counter[str] = Counter()
        self.requests = 0

    def ask(
        self,
        step: str,
        asks: Sequence[Ask],
        schema: Mapping[str, Any],
        no_refusal: Sequence[str] = (),
    ) -> list[dict[str, Any] | None]:
        """The checked JSON reply to each ask, or None where it failed twice (see failures)."""
        first = [self._request(step, a, schema) for a in asks]
        values, problems = self._check(self._complete(first, step), schema, no_refusal)
        todo = [i for i, p in enumerate(problems) if p is not None]
        self.retried.update(f"{step}/{problems[i][0].reason}" for i in todo)
        again = [self._retry(first[i], *problems[i]) for i in todo]
        second_values, second_problems = self._check(
            self._complete(again, f"{step} (retry)"), schema, no_refusal
        )
        for i, value, problem in zip(todo, second_values, second_problems, strict=True):
            values[i] = value
            if problem is not None:
                err, reply = problem
                self.failures.append(
                    {
                        "step": step,
                        "item_id": asks[i].item_id,
                        "reason": err.reason,
                        "detail": err.detail,
                        "reply": reply.text,
                    }
                )
        return values

    def failure_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(f"{f['step']}/{f['reason']}" for f in self.failures).items()))

    def backend_faults(self) -> dict[str, int]:
        """The backend's retries and failed requests by reason ("retry/HTTP 503": n), for
        perf/: they depend on the server's day, not on the data. Backends without counters
        (hf, vllm) give none."""
        return dict(sorted(getattr(self.backend, "stats", {}).items()))

    def _request(self, step: str, ask: Ask, schema: Mapping[str, Any]) -> ChatRequest:
        text = self.prompts.templates[step].format(**ask.fields)
        text += "\n\nReply with one JSON object that follows this JSON schema:\n" + json.dumps(
            schema
        )
        return ChatRequest(
            messages=(
                {"role": "system", "content": self.prompts.system},
                {"role": "user", "content": text},
            ),
            images=ask.images if self.backend.supports_images else (),
            sampling=self.sampling,
            json_schema=schema,
        )

    def _retry(self, request: ChatRequest, problem: ReplyProblem, reply: Reply) -> ChatRequest:
        if problem.reason == "backend_error":  # nothing to correct: ask again as it was
            return request
        correction = self.prompts.templates["retry"].format(problem=problem.detail)
        messages = (
            *request.messages,
            {"role": "assistant", "content": reply.text},
            {"role": "user", "content": correction},
        )
        return replace(request, messages=messages)

    def _complete(self, requests: list[ChatRequest], desc: str) -> list[Reply]:
        self.requests += len(requests)
        return cached_complete(self.backend, self.cache, requests, self.batch_size, desc)

    @staticmethod
    def _check(
        replies: list[Reply], schema: Mapping[str, Any], no_refusal: Sequence[str]
    ) -> tuple[list[dict | None], list[tuple[ReplyProblem, Reply] | None]]:
        values: list[dict | None] = []
        problems: list[tuple[ReplyProblem, Reply] | None] = []
        for reply in replies:
            try:
                values.append(check_reply(reply, schema, no_refusal))
                problems.append(None)
            except ReplyProblem as err:
                values.append(None)
                problems.append((err, reply))
        return values, problems
