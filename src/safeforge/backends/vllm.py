"""In-process batched generation with vLLM's offline `LLM.chat` (extra `[gpu]`, needs a CUDA GPU).

API followed: vLLM's "latest" docs (docs.vllm.ai/en/latest as of 2026-09; newest release 0.33.0):
- api/vllm/entrypoints/llm: `LLM(model, *, tokenizer, trust_remote_code, tensor_parallel_size,
  dtype, revision, seed, gpu_memory_utilization, **EngineArgs)`, where EngineArgs takes
  `max_model_len` and `limit_mm_per_prompt={"image": n}`. `LLM.chat(messages, sampling_params,
  use_tqdm, ...)`: `messages` is a list of conversations; `sampling_params` is one SamplingParams
  or a list "paired one by one with the prompt"; outputs come back in input order.
- features/multimodal_inputs: chat content parts are OpenAI-style; an `image_url` part may carry a
  `data:image/...;base64,` URL.
- features/structured_outputs: `SamplingParams(structured_outputs=StructuredOutputsParams(json=
  schema))` from `vllm.sampling_params`; the old `guided_decoding=GuidedDecodingParams(json=...)`
  was removed in v0.12.0 and is only a fallback for older installs.
- outputs: `RequestOutput.outputs[0]` has `.text` and `.finish_reason` ("stop" | "length" | ...).
- logprobs (source: vllm/logprobs.py, vllm/sampling_params.py, EngineArgs):
  `SamplingParams(logprobs=k)` fills `RequestOutput.outputs[0].logprobs`, one entry per generated
  position, each a `dict[int, Logprob]` (token id -> `.logprob`, `.rank`, `.decoded_token`)
  holding the top k and the sampled token; newer releases store them as `FlatLogprobs`, which
  indexes the same way. The engine's `max_logprobs` (default 20) caps k, and its default
  `logprobs_mode` ("raw_logprobs") reports log-softmax over the whole vocabulary, before
  temperature or top-p. `LLM.get_tokenizer()` is the engine's tokenizer.

A request with `choices` is sent with max_tokens=1 and logprobs=`choice_logprobs`; each choice's
probability is exp(logprob) of its first token at the first position, and 0.0 when that token is
not among the top k (logged at debug level, once per batch).
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, cast

from safeforge.backends.base import (
    Backend,
    ChatRequest,
    Reply,
    Sampling,
    choice_token_ids,
    openai_messages,
)
from safeforge.config import check_keys, require_keys

log = logging.getLogger(__name__)
# a request's conversation, its vLLM SamplingParams, and for a choices request each choice's
# first token id (None for a request that generates)
Prepared = tuple[list[dict], Any, Mapping[str, int] | None]
VLLM_MAX_LOGPROBS = 20  # the engine's default cap on SamplingParams.logprobs

INSTALL_HINT = "vLLM is not installed: pip install 'safeforge[gpu]' (vLLM needs a CUDA GPU)"
# the keys of a vllm backend section; their values live in conf/generator/vllm.yaml only
KEYS = frozenset(
    {"backend", "model", "revision", "dtype", "tensor_parallel_size", "gpu_memory_utilization"}
    | {"max_model_len", "max_images_per_prompt", "trust_remote_code", "batch_size", "images"}
    | {"sampling", "choice_logprobs"}
)


def build_conversation(request: ChatRequest) -> list[dict]:
    """OpenAI-style messages; images ride as data URLs, which LLM.chat decodes in-process."""
    return openai_messages(request)


def sampling_kwargs(sampling: Sampling, json_schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """SamplingParams keyword arguments; the schema stays a plain dict under `json_schema`,
    turned into vLLM's structured-output object only by `make_sampling_params`."""
    greedy = sampling.temperature <= 0
    kwargs: dict[str, Any] = {
        "max_tokens": sampling.max_tokens,
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        # a seed means nothing to greedy decoding and would put the request on vLLM's slower
        # per-request-generator path
        "seed": None if greedy else sampling.seed,
    }
    if json_schema is not None:
        # a deep copy of plain dicts and lists: vLLM serialises the schema for its grammar backend
        kwargs["json_schema"] = json.loads(json.dumps(json_schema, default=dict))
    return kwargs


def choice_sampling_kwargs(top_k: int) -> dict[str, Any]:
    """SamplingParams keyword arguments for a choices request: one greedy token, and the log
    probabilities of the top `top_k` candidates for it."""
    return {"max_tokens": 1, "temperature": 0.0, "top_p": 1.0, "seed": None, "logprobs": top_k}


def structured_json(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The SamplingParams keyword that constrains decoding to `schema`, for new or old vLLM."""
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:  # vLLM before StructuredOutputsParams existed
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema)}
    return {"structured_outputs": StructuredOutputsParams(json=schema)}


def make_sampling_params(kwargs: Mapping[str, Any]) -> Any:
    from vllm import SamplingParams

    kwargs = dict(kwargs)
    schema = kwargs.pop("json_schema", None)
    return SamplingParams(**kwargs, **(structured_json(schema) if schema is not None else {}))


def parse_output(request_output: Any) -> Reply:
    outputs = getattr(request_output, "outputs", None)
    if not outputs:
        return Reply.failed("vLLM returned no output")
    text, finish = outputs[0].text, outputs[0].finish_reason
    if text is None:
        return Reply.failed(f"vLLM returned no text (finish_reason={finish!r})")
    if finish in ("stop", "length"):
        return Reply(text, finish)
    return Reply(text, "error", f"vLLM finish_reason={finish!r}")  # e.g. "abort"


def parse_choice_output(
    request_output: Any, token_ids: Mapping[str, int]
) -> tuple[Reply, list[str]]:
    """The reply to a choices request, and the choices whose token was not among the returned
    top k (probability 0.0: below the k-th candidate, so small, but not measured)."""
    outputs = getattr(request_output, "outputs", None)
    if not outputs:
        return Reply.failed("vLLM returned no output"), []
    finish = outputs[0].finish_reason
    if finish not in ("stop", "length"):
        return Reply.failed(f"vLLM finish_reason={finish!r}"), []
    logprobs = outputs[0].logprobs  # one {token id: Logprob} per generated position
    if not logprobs or not logprobs[0]:
        return Reply.failed("vLLM returned no logprobs for a choices request"), []
    first = logprobs[0]
    probs: dict[str, float] = {}
    missing: list[str] = []
    for choice, token in token_ids.items():
        entry = first.get(token)
        if entry is None:
            missing.append(choice)
        probs[choice] = math.exp(entry.logprob) if entry is not None else 0.0
    return Reply.from_choice_probs(probs), missing


class VLLMBackend(Backend):
    name: ClassVar[str] = "vllm"
    _transient: ClassVar[dict[str, Callable[[], Any]]] = {"_llm": lambda: None}

    def __init__(self, params: Mapping[str, Any], *, load: bool = True) -> None:
        """`params`: a whole backend section (conf/generator/vllm.yaml); `load=False` skips the
        check that vLLM is installed (tests stand in for the engine)."""
        check_keys("vllm backend", params, KEYS)
        require_keys("vllm backend", params, KEYS)
        self.params = dict(params)
        self.model_id = str(self.params["model"])
        self.revision = str(self.params["revision"] or "")  # "" = whatever the hub/folder holds
        self.supports_images = bool(self.params["images"])
        self.batch_size = int(self.params["batch_size"])
        self.default_sampling = Sampling.from_params(
            self.params["sampling"], "vllm backend.sampling"
        )
        self.choice_logprobs = int(self.params["choice_logprobs"])
        if self.choice_logprobs < 1:
            raise ValueError(f"vllm: choice_logprobs={self.choice_logprobs} must be >= 1")
        self._choice_ids: dict[tuple[str, ...], dict[str, int]] = {}
        # the engine and the SamplingParams factory are attributes so tests can stand in for them
        self._llm: Any = None
        self._make_sampling: Callable[[Mapping[str, Any]], Any] = make_sampling_params
        # fail now if vLLM is missing, but start the engine (minutes) only when a request
        # misses the row cache: a fully cached rerun never loads the model
        if load and "vllm" not in sys.modules and importlib.util.find_spec("vllm") is None:
            raise ImportError(INSTALL_HINT)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> VLLMBackend:
        return cls(params)

    def _load(self) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError(INSTALL_HINT) from exc
        p = self.params
        # vLLM refuses limit_mm_per_prompt for a text-only model, so it goes only with images
        max_images = int(p["max_images_per_prompt"])
        extra: dict[str, Any] = {}
        if self.supports_images:
            extra["limit_mm_per_prompt"] = {"image": max_images}
        # the engine refuses SamplingParams.logprobs above its max_logprobs: raise that cap only
        # when choice_logprobs needs more than the default
        if self.choice_logprobs > VLLM_MAX_LOGPROBS:
            extra["max_logprobs"] = self.choice_logprobs
        self._llm = LLM(
            model=self.model_id,
            revision=p["revision"],
            dtype=p["dtype"],
            trust_remote_code=bool(p["trust_remote_code"]),
            tensor_parallel_size=int(p["tensor_parallel_size"]),
            gpu_memory_utilization=float(p["gpu_memory_utilization"]),
            max_model_len=int(p["max_model_len"]),
            seed=self.default_sampling.seed,
            **extra,
        )

    def load(self) -> None:
        if self._llm is None:
            self._load()

    def complete(self, requests: Sequence[ChatRequest]) -> list[Reply]:
        self.load()
        for request in requests:  # choices the tokenizer cannot tell apart fail the call, now
            self._token_ids(request.choices)
        replies: list[Reply] = []
        for start in range(0, len(requests), self.batch_size):
            replies += self._complete_chunk(requests[start : start + self.batch_size])
        return replies

    def _complete_chunk(self, chunk: Sequence[ChatRequest]) -> list[Reply]:
        # a chunk at a time: only batch_size requests' images are held as base64 in memory
        replies: list[Reply | None] = [None] * len(chunk)
        ready: list[tuple[int, Prepared]] = []
        for i, request in enumerate(chunk):
            try:  # an unreadable image or a refused request fails here, alone
                ready.append((i, self._prepare(request)))
            except Exception as exc:
                replies[i] = Reply.failed(exc)
        for (i, _), reply in zip(ready, self._chat([p for _, p in ready]), strict=True):
            replies[i] = reply
        return cast(list[Reply], replies)  # every slot is filled: failed to prepare, or ran

    def _prepare(self, request: ChatRequest) -> Prepared:
        if request.images and not self.supports_images:
            raise ValueError(f"{self.model_id} is configured as text-only (images: false)")
        if len(request.images) > int(self.params["max_images_per_prompt"]):
            raise ValueError(f"{len(request.images)} images > max_images_per_prompt")
        if request.choices:
            kwargs = choice_sampling_kwargs(self.choice_logprobs)
            token_ids: Mapping[str, int] | None = self._token_ids(request.choices)
        else:
            kwargs, token_ids = sampling_kwargs(request.sampling, request.json_schema), None
        return build_conversation(request), self._make_sampling(kwargs), token_ids

    def _token_ids(self, choices: tuple[str, ...]) -> dict[str, int]:
        if choices and choices not in self._choice_ids:
            tokenizer = self._llm.get_tokenizer()
            self._choice_ids[choices] = choice_token_ids(tokenizer, choices)
        return self._choice_ids.get(choices, {})

    def _chat(self, prepared: list[Prepared]) -> list[Reply]:
        if not prepared:
            return []
        try:
            outputs = self._llm.chat(
                [conversation for conversation, _, _ in prepared],
                sampling_params=[params for _, params, _ in prepared],  # paired one by one
                use_tqdm=False,
            )
            if len(outputs) != len(prepared):
                raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prepared)}")
            return self._parse(outputs, prepared)
        except Exception as exc:  # one request the engine rejects (prompt too long) fails all
            if len(prepared) == 1:
                return [Reply.failed(exc)]
            log.warning("vLLM batch of %d failed (%s); retrying one at a time", len(prepared), exc)
            return [self._chat([one])[0] for one in prepared]

    def _parse(self, outputs: Sequence[Any], prepared: list[Prepared]) -> list[Reply]:
        replies: list[Reply] = []
        asked = outside = 0
        for output, (_, _, token_ids) in zip(outputs, prepared, strict=True):
            if token_ids is None:
                replies.append(parse_output(output))
                continue
            reply, missing = parse_choice_output(output, token_ids)
            replies.append(reply)
            asked, outside = asked + 1, outside + bool(missing)
        if outside:  # normal for an unlikely choice: debug, and once per batch, not per row
            log.debug(
                "vLLM: %d of %d choice requests had a choice outside the top-%d logprobs (0.0)",
                outside,
                asked,
                self.choice_logprobs,
            )
        return replies

    def close(self) -> None:
        self._llm = None  # vLLM shuts its engine down and frees GPU memory once collected
        gc.collect()
