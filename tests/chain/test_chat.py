"""The RMS chain: records from model replies, malformed replies retried once then dropped with
their reason, and the row cache regenerating only the prompt steps that changed.

The backend here is a scripted model (a real Backend that answers each step by its schema), so
every reply, good or bad, is chosen by the test; tests/backends/ cover the real backends."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from helpers import sampling

from safeforge.backends.base import Backend, ChatRequest, Reply
from safeforge.cache import RowCache
from safeforge.chain.chat import Chat, Prompts
from safeforge.config import compose
from safeforge.generate.rms import write_records

CATEGORIES = {
    "physical_injury": {"description": "burns"},
    "animal_welfare": {"description": "pets"},
    "privacy": {"description": "people"},
}


class ScriptedModel(Backend):
    """Answers each step from the image description; words in it inject faults."""

    name = "scripted"

    def __init__(self) -> None:
        self.model_id, self.revision = "scripted", "1"
        self.calls: Counter[str] = Counter()

    def complete(self, requests):
        return [self.answer(r) for r in requests]

    def answer(self, request: ChatRequest) -> Reply:
        step = next(iter(request.json_schema["properties"]))
        self.calls[step] += 1
        prompt = request.messages[1]["content"]
        retry = len(request.messages) > 2
        if "server-down" in prompt:
            return Reply("", "error", "HTTP 500 after 5 attempts")
        if step == "risks":
            if "garbage-once" in prompt and not retry:
                return Reply("Sure, here are the risks: a hot drink")
            if "outside-taxonomy" in prompt:
                return _json({"risks": [_risk("arson_risk", "arson")]})
            if "nothing-risky" in prompt:
                return _json({"risks": []})
            risks = [_risk("hot_drink_child", "physical_injury")]
            if "kitten" in prompt:
                risks = [_risk("pet_food", "animal_welfare")]
            return _json({"risks": risks})
        if step == "unsafe_query":
            unsafe = (
                "Can I feed him grapes?" if "kitten" in prompt else "Can I give this to my toddler?"
            )
            if "Be brief." in prompt:
                unsafe = unsafe.replace("Can I", "May I")
            if "refuses" in prompt:
                unsafe = "I'm sorry, but I can't write that."
            return _json(
                {"unsafe_query": unsafe, "benign_query": "How hot is it?", "image_dependent": True}
            )
        if step == "unsafe_guidance":
            if "truncates" in prompt:
                return Reply('{"unsafe_guidance": "Please do', "length")
            return _json(
                {
                    "unsafe_guidance": "Please don't: it scalds. Try milk.",
                    "benign_guidance": "About 70 C.",
                }
            )
        if step == "harmless":
            return _json(
                {"harmless": "kitten" not in prompt, "guidance": "Nothing here makes it risky."}
            )
        return _json({"description": "scripted"})


def _risk(scenario: str, category: str) -> dict:
    return {"scenario": scenario, "category": category, "analysis": f"{scenario} is risky"}


def _json(value: dict) -> Reply:
    return Reply(json.dumps(value))


def image(name: str, tmp_path, description: str) -> dict:
    path = tmp_path / f"{name}.png"
    path.write_bytes(
        name.encode()
    )  # images are keyed by content; the scripted model never opens them
    return {"image_id": name * 4, "path": str(path), "caption": name, "description": description}


@pytest.fixture
def prompts() -> Prompts:
    return Prompts.from_params(compose()["prompts"])


def run(images, prompts, tmp_path, model=None, contrast=True):
    model = model or ScriptedModel()
    chat = Chat(model, prompts, RowCache("t", tmp_path / "cache"), sampling(), batch_size=4)
    return write_records(images, chat, CATEGORIES, 3, contrast, "scripted@1"), chat, model


def test_records_for_each_real_risk_with_contrast_on_an_unrelated_image(tmp_path, prompts):
    images = [image("coffee", tmp_path, "a cup of coffee"), image("cat", tmp_path, "a kitten")]
    result, chat, _ = run(images, prompts, tmp_path)
    records = result.records
    assert sorted(records["query_type"]) == ["benign", "benign", "contrast", "unsafe", "unsafe"]
    unsafe = records.filter(query_type="unsafe").sort("image_id")
    assert unsafe["category"].to_list() == ["animal_welfare", "physical_injury"]
    assert unsafe["guidance"].to_list() == ["Please don't: it scalds. Try milk."] * 2
    # the kitten's unsafe query lands on the coffee image (no animal risk there), as safe; the
    # coffee's query beside the kitten the model judged still risky: counted, not kept
    contrast = records.filter(query_type="contrast")
    assert contrast.select("image_id", "query", "label").row(0) == (
        "coffeecoffeecoffeecoffee",
        "Can I feed him grapes?",
        "safe",
    )
    assert result.counts == {"contrast_not_harmless": 1}
    assert result.dropped == {} and chat.failures == []


def test_malformed_replies_are_retried_once_then_dropped_with_their_reason(tmp_path, prompts):
    images = [
        image("ok", tmp_path, "a cup of coffee"),
        image("flaky", tmp_path, "a cup of coffee garbage-once"),
        image("label", tmp_path, "outside-taxonomy"),
        image("refusal", tmp_path, "a cup of coffee refuses"),
        image("cut", tmp_path, "a cup of coffee truncates"),
        image("down", tmp_path, "server-down"),
        image("plain", tmp_path, "nothing-risky"),
    ]
    result, chat, _ = run(images, prompts, tmp_path, contrast=False)
    assert result.dropped == {
        "labellabellabellabel": "analyse_label_outside_taxonomy",
        "refusalrefusalrefusalrefusal": "queries_refusal",
        "cutcutcutcut": "guidance_truncated_output",
        "downdowndowndown": "analyse_backend_error",
        "plainplainplainplain": "no_real_risk",
    }
    # the flaky image's first reply was prose: retried with the problem named, then kept
    assert set(result.records["image_id"]) == {"okokokok", "flakyflakyflakyflaky"}
    assert chat.retried["analyse/invalid_json"] == 1
    assert chat.failure_counts() == {
        "analyse/backend_error": 1,
        "analyse/label_outside_taxonomy": 1,
        "guidance/truncated_output": 1,
        "queries/refusal": 1,
    }
    refusal = next(f for f in chat.failures if f["reason"] == "refusal")
    assert "I'm sorry" in refusal["reply"]  # the reply itself is kept, not just its reason


def test_a_rerun_is_served_from_the_cache_and_failed_calls_are_tried_again(tmp_path, prompts):
    images = [image("coffee", tmp_path, "a cup of coffee"), image("down", tmp_path, "server-down")]
    run(images, prompts, tmp_path)
    again = ScriptedModel()
    result, _, _ = run(images, prompts, tmp_path, model=again)
    # only the failed call (not cached) reaches the model again: first try and its retry
    assert again.calls == Counter({"risks": 2})
    assert result.records.height > 0


def test_editing_one_prompt_regenerates_that_step_and_the_steps_after_it(tmp_path, prompts):
    images = [image("coffee", tmp_path, "a cup of coffee"), image("cat", tmp_path, "a kitten")]
    run(images, prompts, tmp_path)

    model = ScriptedModel()
    run(images, edited(prompts, "guidance"), tmp_path, model=model)
    assert model.calls == Counter({"unsafe_guidance": 2})

    model = ScriptedModel()
    run(images, edited(prompts, "queries"), tmp_path, model=model)
    # new queries (the scripted model words them differently when asked to be brief) feed
    # guidance and contrast, which are asked again; analyse is not
    assert model.calls == Counter({"unsafe_query": 2, "unsafe_guidance": 2, "harmless": 2})


def edited(prompts: Prompts, step: str) -> Prompts:
    templates = {**prompts.templates, step: prompts.templates[step] + " Be brief."}
    return Prompts(prompts.version, prompts.system, templates)


def test_prompts_name_the_step_and_placeholder_that_is_wrong() -> None:
    params = dict(compose()["prompts"])
    with pytest.raises(ValueError, match=r"prompts.guidance: unknown placeholders \['colour'\]"):
        Prompts.from_params({**params, "guidance": "Answer about {colour}."})
    with pytest.raises(ValueError, match=r"missing \['retry'\]"):
        Prompts.from_params({k: v for k, v in params.items() if k != "retry"})
    with pytest.raises(ValueError, match=r"unknown \['summarise'\]"):
        Prompts.from_params({**params, "summarise": "x"})


def test_both_prompt_versions_compose_and_differ() -> None:
    v1 = Prompts.from_params(compose()["prompts"])
    v2 = Prompts.from_params(compose(overrides=["prompts=v2"])["prompts"])
    assert (v1.version, v2.version) == ("v1", "v2")
    assert v1.templates["guidance"] != v2.templates["guidance"]
    assert v1.templates["analyse"] == v2.templates["analyse"]
