"""The config groups a user edits, typed: one dataclass per group, each key's type and range declared once.

:func:`read_group` reads a composed group (``cfg.train``, ``cfg.teacher``, ...) through its schema and returns
the typed, normalised settings, or raises ConfigError in one line: ``<group>.<key> must be <allowed>, got
<value>`` (or ``<group>.<key>=<value> is not one of ...``). ``sweep.config_check.check_config`` reads every
group a trial's stages will use before any data is loaded or model touched; the code that uses a setting
reads it through the same field (:func:`~training.config.settings.read_settings`, ``read_setting``), so no rule is
written twice. Keys a schema does not declare pass unread: users add their own with ``+group.key=...``.
Only ``training.config.settings`` and pure-Python modules are imported here: no torch, no transformers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from training.common.errors import ConfigError
from training.config.settings import (
    as_float,
    choice,
    flag,
    integer,
    mapping,
    nested,
    number,
    read_settings,
    refuse,
    setting,
    text,
)
from training.grading.answers import EXTRACTORS
from training.grading.completions import THINK_CLOSE, THINK_OPEN

DATA_SOURCES = ("package", "hub", "files")
TASK_TYPE_RULES = ("calculator_steps",)
ANSWER_FORMATS = ("number", "latex")  # latex: golds stay LaTeX, graded by math-verify (data=math500)
MODEL_SOURCES = ("hub", "gguf", "tiny")
SELECTIONS = ("all", "shortest")
QUANTIZATIONS = ("nf4", "none")
# transformers' SchedulerType values, listed here so the check needs no transformers import (5 s);
# a test keeps the two in step.
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
                 "warmup_stable_decay", "greedy")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16")
BACKENDS = ("auto", "transformers", "vllm")
EXEMPLAR_SOURCES = ("level", "reference")
EVAL_THINKING = ("on", "off", "both")

def _modules(value: Any, key: str) -> str | list[str]:
    """``all-linear`` (also for null or empty), or a non-empty list of module names."""
    if not value:
        return "all-linear"
    if isinstance(value, str):
        return value
    names = list(value) if not isinstance(value, (int, float, bool)) else [value]
    if not all(isinstance(name, str) and name for name in names):
        raise refuse(key, "all-linear or a list of module names", names)
    return names


def _thinking(value: Any, key: str) -> str:
    """on, off or both; an unquoted YAML ``on``/``off`` arrives as a boolean, and means the same."""
    if isinstance(value, bool):
        value = "on" if value else "off"
    return choice(EVAL_THINKING)(value, key)


def _task_type_rule(value: Any, key: str) -> str | None:
    """null, or how to derive a task type the data set has no column for (GSM8K: its calculator steps)."""
    return None if value is None else choice(TASK_TYPE_RULES)(value, key)


def _warmup(value: Any, key: str) -> float:
    """Steps (>= 1) or a fraction of all steps (< 1); null reads as 0."""
    return as_float(value or 0, key, low=0, allowed="a number >= 0 (steps, or a fraction of all steps below 1)")


def _served_model(value: Any, key: str) -> str:
    if value is None or value == "":
        raise ConfigError(f"{key} is not set: add {key}=NAME (the model the server serves)")
    return text()(value, key)


def _url(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise refuse(key, "an http:// or https:// URL", value)
    return value


@dataclass(frozen=True, kw_only=True)
class EvalFromSettings:
    """``data.eval_from``: another data set's eval problems; only its source and fields count."""
    source: str = setting(choice(DATA_SOURCES))
    answer_format: str = setting(choice(ANSWER_FORMATS), "number")


@dataclass(frozen=True, kw_only=True)
class DataSettings:
    """``data``: the source and the subset sizes (its files, splits and fields are the loader's to read)."""
    source: str = setting(choice(DATA_SOURCES))
    answer_format: str = setting(choice(ANSWER_FORMATS), "number")
    task_type_from: str | None = setting(_task_type_rule, None)  # null: the fields.task_type column, if any
    n_train: int | None = setting(integer(0, null=True), None)  # null: every problem
    n_eval: int | None = setting(integer(0, null=True), None)
    seed: int = setting(integer(0), 0)
    eval_from: EvalFromSettings | None = setting(nested(EvalFromSettings, null=True), None)


@dataclass(frozen=True, kw_only=True)
class FilterSettings:
    select: str = setting(choice(SELECTIONS), "all")
    allow_empty_think: bool = setting(flag(), False)
    max_think_tokens: int | None = setting(integer(1, null=True), None)  # null: no limit
    tokenizer: str | None = setting(text(null=True), None)  # null: the student's


@dataclass(frozen=True, kw_only=True)
class ThinkTags:
    open: str = setting(text())
    close: str = setting(text())


# What each model source needs besides its name.
SOURCE_KEYS = {"hub": ("path",), "gguf": ("package", "gguf_file"), "tiny": ("package", "tokenizer_dir")}


@dataclass(frozen=True, kw_only=True)
class ModelSettings:
    name: str = setting(text())
    source: str = setting(choice(MODEL_SOURCES))
    path: str | None = setting(text(null=True), None)  # hub: a hub id or a folder
    package: str | None = setting(text(null=True), None)  # gguf, tiny: the pip package shipping the files
    gguf_file: str | None = setting(text(null=True), None)
    tokenizer_dir: str | None = setting(text(null=True), None)
    chat_template: str | None = setting(text(null=True, empty=True), None)  # null: the tokenizer's own
    chat_template_kwargs: Mapping[str, Any] | None = setting(mapping(), None)
    stop_token: str = setting(text())
    think: ThinkTags = setting(nested(ThinkTags))

    def check(self, group: str) -> None:
        for key in SOURCE_KEYS[self.source]:
            if getattr(self, key) is None:
                raise refuse(f"{group}.{key}", f"set for {group}.source={self.source}", None)


@dataclass(frozen=True, kw_only=True)
class HardwareSettings:
    device: str = setting(choice(("auto", *DEVICES)), "auto")
    precision: str = setting(choice(("auto", *PRECISIONS)), "auto")
    attn_implementation: str | None = setting(text(null=True), None)
    num_threads: int | None = setting(integer(1, "null or at least 1", null=True), None)  # null: every usable core
    # null reads as 1; not `or 1`: an explicit 0 is a mistake to report, not to fix.
    num_processes: int | None = setting(integer(1, "at least 1", null=True), None)
    # Trials running at once on this machine (the sweeper sets it): each gets its own 1/k of the GPUs
    # (training/models/gpu_slots.py). null reads as 1.
    concurrent_trials: int | None = setting(integer(1, "null or at least 1", null=True), None)


@dataclass(frozen=True, kw_only=True)
class QuantSettings:
    """The part of ``train`` every model stage reads: the student is loaded with it, for eval alone too."""
    quantization: str = setting(choice(QUANTIZATIONS), "nf4")
    double_quant: bool = setting(flag(), True)
    allow_unquantized_fallback: bool = setting(flag(), False)


@dataclass(frozen=True, kw_only=True)
class TrainSettings(QuantSettings):
    lora_r: int = setting(integer(1))
    lora_alpha: float = setting(number(0, low_open=True))
    lora_dropout: float = setting(number(0, 1, high_open=True))
    target_modules: str | list[str] = setting(_modules, "all-linear")
    # transformers reads a fractional epoch count as part of a last epoch.
    epochs: float = setting(number(0, low_open=True))
    batch_size: int = setting(integer(1))
    grad_accum: int = setting(integer(1))
    learning_rate: float = setting(number(0, low_open=True))
    lr_scheduler: str = setting(choice(LR_SCHEDULERS), "linear")
    warmup: float = setting(_warmup, 0)
    weight_decay: float = setting(number(0), 0.0)
    max_grad_norm: float = setting(number(0), 1.0)  # 0: no clipping
    max_length: int = setting(integer(1))
    logging_steps: int = setting(integer(1), 1)
    gradient_checkpointing: bool = setting(flag(), False)
    completion_only_loss: bool = setting(flag(), True)  # false: loss on prompt and completion alike
    group_by_length: bool = setting(flag(), True)
    seed: int = setting(integer(0))
    # Early stopping (training/sft/early_stopping.py): a seeded share of the training problems held out as a
    # validation split, evaluated every eval_steps optimizer steps. 0: no split, no evaluation during training.
    val_fraction: float = setting(number(0, 1, high_open=True), 0.0)
    early_stopping_patience: int | None = setting(integer(1, null=True), None)  # null: never stop early
    early_stopping_threshold: float = setting(number(0), 0.0)  # an improvement must exceed this to count
    eval_steps: int = setting(integer(1), 5)
    load_best_model_at_end: bool = setting(flag(), True)  # the adapter saved is the best-validated one
    # The Atem mix (training/data/thinking.py): this seeded share of the rows becomes no-think rows.
    no_think_fraction: float = setting(number(0, 1, high_open=True), 0.0)

    def check(self, group: str) -> None:
        if self.early_stopping_patience is not None and self.val_fraction == 0:
            raise ConfigError(f"{group}.early_stopping_patience={self.early_stopping_patience} needs a validation "
                              f"split: set {group}.val_fraction in (0, 1), or the patience to null")


@dataclass(frozen=True, kw_only=True)
class EvalSettings:
    batch_size: int = setting(integer(1))
    share_prefix: bool = setting(flag(), True)
    regroup_after: int = setting(integer(0, "an integer >= 0 (0: one pass per batch)"), 32)
    n_shots: int = setting(integer(0), 0)
    extractor: str = setting(choice(tuple(EXTRACTORS)), "flexible")
    log_samples: int = setting(integer(0), 64)
    backend: str = setting(choice(BACKENDS), "auto")
    vllm_engine_args: Mapping[str, Any] | None = setting(mapping("a mapping of vllm.LLM arguments or null"), None)
    # Deimos' runtime switch: evaluate thinking on, off (an empty think block), or both (two records).
    thinking: str = setting(_thinking, "on")


@dataclass(frozen=True, kw_only=True)
class SamplingSettings:
    """``sampling`` (and an HF teacher's): temperature, top_p and top_k are read only when sampling."""
    max_new_tokens: int = setting(integer(1, "at least 1"), 0)
    repetition_penalty: float = setting(number(0, low_open=True, allowed="positive"), 1.0)
    # Not a generate() argument (generate applies it as a logits processor), but a setting all the same.
    presence_penalty: float = setting(number(), 0.0)
    do_sample: bool = setting(flag(null_is_false=True), False)
    temperature: float | None = setting(number(0, low_open=True, allowed="positive when sampling"), when="do_sample")
    top_p: float | None = setting(number(0, 1, low_open=True), when="do_sample")
    top_k: int | None = setting(integer(0, "an integer >= 0 (0 turns it off)"), when="do_sample")


@dataclass(frozen=True, kw_only=True)
class TeacherSettings:
    """``teacher``, any kind: ``n_samples`` is the pipeline's; the rest goes to the teacher's constructor."""
    n_samples: int = setting(integer(1), 1)


@dataclass(frozen=True, kw_only=True)
class ReferenceTeacherSettings(TeacherSettings):
    think_open: str = setting(text(), THINK_OPEN)
    think_close: str = setting(text(), THINK_CLOSE)


@dataclass(frozen=True, kw_only=True)
class PromptedTeacherSettings(TeacherSettings):
    """What an LLM teacher is shown (:mod:`training.teachers.prompts`)."""
    n_shots: int = setting(integer(0), 2)
    exemplars: str = setting(choice(EXEMPLAR_SOURCES), "level")
    system: str | None = setting(text(null=True, empty=True), None)  # null: the default instruction


@dataclass(frozen=True, kw_only=True)
class OpenAITeacherSettings(PromptedTeacherSettings, ReferenceTeacherSettings):
    model: str = setting(_served_model, None)
    base_url: str = setting(_url, "http://localhost:8000/v1")
    api_key_env: str | None = setting(text(null=True), "OPENAI_API_KEY")
    temperature: float | None = setting(number(0, null=True), 0.7)  # null: the server's default
    top_p: float | None = setting(number(0, 1, low_open=True, null=True), None)
    max_tokens: int | None = setting(integer(1, null=True), 1024)
    concurrency: int = setting(integer(1), 8)
    timeout_s: float = setting(number(0, low_open=True), 120.0)
    max_retries: int = setting(integer(0), 5)
    backoff_s: float = setting(number(0), 1.0)
    backoff_max_s: float = setting(number(0), 60.0)
    cache_dir: str | None = setting(text(null=True), None)
    extra_body: Mapping[str, Any] | None = setting(mapping(), None)


@dataclass(frozen=True, kw_only=True)
class HFTeacherSettings(PromptedTeacherSettings):
    name: str = setting(text(), "hf")
    model: ModelSettings = setting(nested(ModelSettings))
    hardware: HardwareSettings | None = setting(nested(HardwareSettings, null=True), None)
    sampling: SamplingSettings = setting(nested(SamplingSettings))
    batch_size: int = setting(integer(1, "at least 1"), 16)
    adapter: str | None = setting(text(null=True), None)  # a LoRA adapter folder on the teacher model
    quantization: str = setting(choice(QUANTIZATIONS), "none")


TEACHERS = {"training.teachers.reference.ReferenceTeacher": ReferenceTeacherSettings,
            "training.teachers.openai_api.OpenAITeacher": OpenAITeacherSettings,
            "training.teachers.hf.HFTeacher": HFTeacherSettings}
GROUPS = {"data": DataSettings, "filter": FilterSettings, "model": ModelSettings, "hardware": HardwareSettings,
          "train": TrainSettings, "eval": EvalSettings, "sampling": SamplingSettings}


def teacher_schema(cfg: Mapping[str, Any]) -> type[TeacherSettings]:
    """The schema of the teacher ``cfg._target_`` names; a teacher of the user's own gets the common one."""
    return TEACHERS.get(str(cfg.get("_target_")), TeacherSettings)


def read_group(group: str, cfg: Mapping[str, Any]) -> Any:
    """The typed settings of config group ``group`` (``"teacher"``: by its kind); ConfigError names a bad value."""
    return read_settings(teacher_schema(cfg) if group == "teacher" else GROUPS[group], cfg, group)
