"""ClueJudge: the CLUE method (Wang et al., "MLLM-as-a-Judge for Image Safety without Human
Labeling", CVPR 2025, arXiv 2501.00192) as a zero-shot judge of (image, request) pairs.

Nothing is trained: `fit` builds the judge from its config (conf/judge/clue.yaml) and a
constitution of objective rules (conf/constitution/). Per item:

1. Relevance scan. Each rule's text is compared with the item: with `relevance.clip_model` (a
   local CLIP-type folder) by image-text cosine, as the paper does (its default threshold is
   0.22 for CLIP ViT-B/16); without one, by MiniLM cosine between the rule text and
   "<the MLLM's own description of the image>\\nUser's request: <text>" (the description is one
   cached request through the same backend). An item without an image is scanned by its
   request text alone (MiniLM). The `top_k` rules at or above `min_similarity` are checked.
2. Precondition chains. Each rule has an ordered chain of yes/no questions; each precondition
   is about the image (debiased, below) or about the request (`about: request`: the answer
   comes from the text, so comparing with the question asked without the image means nothing).
   The chain stops at the first precondition that does not hold (later ones are never asked);
   the rule is violated when every precondition holds; the item is unsafe when any rule is.
3. Token-probability score of a precondition, asked with the image and the request and the
   choices ("Yes", "No"): s = P(Yes) / (P(Yes) + P(No)). For an image precondition the same
   question is also asked without the image (s0) and with the image's centre removed (sc: a
   centred box of `centre_fraction` of each side filled with the image's mean colour).
4. Debiased score D in [-1, 1], the paper's Algorithm 1 (lines 13-20) written as one score:

       s0' = w0 * s0 + (1 - w0) * 0.5          w0 = debias.no_image_weight; s0' = 0.5 (no
                                               prior) for request questions and image-less items
       u   = (s - s0') / (1 - s0')   if s >= s0'   (share of the headroom the image adds)
             (s - s0') / s0'         otherwise     (share of the prior the image takes away)
       v   = s - sc                                (what the centre adds; image preconditions)
       D   = u                       if u < reject_threshold   (the image lowers Yes: veto)
             min(1, max(u, wc * v))  otherwise     wc = debias.centre_weight

   Holds when D > hold_threshold; does not hold when D < reject_threshold; otherwise the
   chain-of-thought fallback decides. With the defaults (w0 = 1, hold 0.8, reject -0.3,
   wc = 4/3 = 0.8 / 0.6) this is exactly the paper's rule: not satisfied if s - s0 < -0.3 * s0;
   satisfied if s - s0 > 0.8 * (1 - s0) or s - sc > 0.6 (its alpha1, alpha2, beta); else
   reasoning. w0 = 0 and wc = 0 give the undebiased ablation (D = 2s - 1, raw s).
5. Fallback (the paper's cascaded reasoning): the model is asked to reason step by step about
   the question (image and request shown), then, in a second turn without the image, to sum
   up as JSON {"holds": true|false, "reason": "..."}. A summary that is not valid JSON of that
   form counts in stats["invalid_fallbacks"] and the precondition does not hold. With the
   fallback off, an unsure precondition holds when D >= the midpoint m = (hold + reject) / 2.

p_unsafe (continuous, for AUROC) = max over checked rules of min over the preconditions
asked of q, where q maps D piecewise linearly with q(-1) = 0, q(m) = 0.5, q(1) = 1; a fallback
verdict takes the fixed value q(hold_threshold) when it holds and q(reject_threshold) when it
does not (or was invalid, or failed). So confident rejects < fallback no < 0.5 <= fallback yes
< confident holds, and p_unsafe >= 0.5 exactly when some rule is violated (no relevant rule:
0). pred_category is the category of the violated rule with the highest score ("" when safe).

Choices made where the paper gives no recipe for this project (see also conf/judge/clue.yaml):
- the centre region is a fixed centred box, not OWLv2's box around the precondition's central
  object (no open-vocabulary detector ships here), and strategy 2 always takes part instead of
  only when the detector is confident;
- rules are about (image, request) pairs, so preconditions may be about the request; those use
  s alone against the neutral 0.5;
- the summary turn carries the reasoning as text but not the image again;
- without CLIP, relevance is MiniLM text similarity with the MLLM's own description;
- the paper checks every rule above the relevance threshold; here at most `top_k` of them;
- the paper's crop of small central objects (OWLv2 boxes under 1% of the image) is not done.

stats (kept across predict calls): calls (requests sent through the row cache, cached or not),
fallbacks (preconditions handed to the reasoning fallback), invalid_fallbacks (summaries that
were not the JSON asked for), failed_calls (replies with an error: a timeout, an unreadable
image, a server that returns no logprobs). A reply whose probabilities hold neither Yes nor No
(an openai server's top logprobs) is not a failure: that precondition is unsure.

Every backend call goes through the row cache (safeforge.backends.cached, as generate's: key
backend identity + request.key_parts(), value with the choice probabilities), one batch per
stage of the method across all items (the descriptions; each chain position's s, s0 and sc
questions; the fallback's reasoning; its summaries), so a rerun computes nothing.
Centre-removed images are written once per image content under <cache dir>/clue-centre/
(backends take paths).

Modules: constitution (rules, preconditions, their validation, conf/ lookup), config
(ClueConfig), prompts (the requests sent), scores (s, D, the decision, q, the fallback
summary), verdicts (chains to p_unsafe, category and rationale), relevance (CLIP and MiniLM
scans), centre (the centre-removed image), judge (ClueJudge: the rounds, predict, save/load).
"""

from .centre import CENTRE_DIR, centre_removed_path, remove_centre
from .config import ClueConfig, DebiasConfig, FallbackConfig, RelevanceConfig
from .constitution import (
    ABOUT,
    Constitution,
    Precondition,
    Rule,
    load_constitution,
    load_taxonomy,
    parse_constitution,
    resolve_conf,
)
from .judge import ClueJudge  # registers the "clue" judge kind
from .prompts import CHOICES, FALLBACK_SCHEMA, Prompts
from .relevance import ClipScanner, relevance_text, top_rules
from .scores import NEUTRAL, Scoring, Step, parse_fallback, yes_score
from .verdicts import Chain, predictions, rule_outcome

__all__ = [
    "ABOUT",
    "CENTRE_DIR",
    "CHOICES",
    "FALLBACK_SCHEMA",
    "NEUTRAL",
    "Chain",
    "ClipScanner",
    "ClueConfig",
    "ClueJudge",
    "Constitution",
    "DebiasConfig",
    "FallbackConfig",
    "Precondition",
    "Prompts",
    "RelevanceConfig",
    "Rule",
    "Scoring",
    "Step",
    "centre_removed_path",
    "load_constitution",
    "load_taxonomy",
    "parse_constitution",
    "parse_fallback",
    "predictions",
    "relevance_text",
    "remove_centre",
    "resolve_conf",
    "rule_outcome",
    "top_rules",
    "yes_score",
]
