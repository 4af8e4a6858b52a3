"""VlmJudge: supervised fine-tuning of an image-text-to-text model, LlavaGuard style (GPU).

The model reads the image and an instruction listing the categories seen in train (plus
"none") with the user's query, and answers JSON: {"rating": "Safe"|"Unsafe", "category",
"rationale"}; the rationale target is the record's risk_analysis and guidance. Loss is on the
reply tokens only. LoRA (peft) or full fine-tuning, vision tower frozen by default.

Scoring reads the rating from probabilities, not from sampled text: the reply is prefilled with
`{"rating": "` and p_unsafe = P(Unsafe) / (P(Safe) + P(Unsafe)) over the first token of each
word, so every item gets a calibrated score even when the generated JSON is broken. With
`generate: true` the rest of the JSON is generated greedily for category and rationale;
replies that do not validate against the schema are counted in `stats`.

Prompts and replies are tokenized apart and concatenated (prompt by the processor, which
expands the image tokens; reply or prefill by the tokenizer), in training and scoring alike, so
both see exactly the same ids and the reply/prompt boundary needs no offset arithmetic.

Modules: config (VlmConfig, device and dtype), prompt (instruction, target reply, schema,
rating and end-of-turn tokens), batch (images, encoding with the label mask, collation),
model (loading, freezing, LoRA, weights on disk), train (the training loop and val pass),
judge (VlmJudge). Importing this package registers the "vlm" judge kind.
"""

from safeforge.judges.vlm.batch import load_image
from safeforge.judges.vlm.config import (
    DTYPES,
    VlmConfig,
    resolve_device,
    resolve_dtype,
)
from safeforge.judges.vlm.judge import VlmJudge
from safeforge.judges.vlm.model import (
    ADAPTER_DIR,
    MODEL_DIR,
    PROCESSOR_DIR,
    PROJECTOR_NAMES,
    VISION_NAMES,
    model_folder,
    prepare_for_training,
    vision_module_name,
)
from safeforge.judges.vlm.prompt import (
    INSTRUCTION,
    NONE_CATEGORY,
    PREFILL,
    RATINGS,
    build_messages,
    parse_reply,
    reply_schema,
    target_reply,
    truncate,
)
from safeforge.judges.vlm.train import HISTORY_KEYS, TRAIN_COLUMNS

__all__ = [
    "ADAPTER_DIR",
    "DTYPES",
    "HISTORY_KEYS",
    "INSTRUCTION",
    "MODEL_DIR",
    "NONE_CATEGORY",
    "PREFILL",
    "PROCESSOR_DIR",
    "PROJECTOR_NAMES",
    "RATINGS",
    "TRAIN_COLUMNS",
    "VISION_NAMES",
    "VlmConfig",
    "VlmJudge",
    "build_messages",
    "load_image",
    "model_folder",
    "parse_reply",
    "prepare_for_training",
    "reply_schema",
    "resolve_device",
    "resolve_dtype",
    "target_reply",
    "truncate",
    "vision_module_name",
]
