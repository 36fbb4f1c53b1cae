"""Compression levels: validated from the ``level`` config group, turned into prompts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from training.common.errors import ConfigError
from training.config.settings import integer, number, read_settings, setting, text
from training.grading.completions import THINK_CLOSE, THINK_OPEN, format_completion

RENDERERS = ("verbose", "concise", "terse", "chain", "final")


@dataclass(frozen=True)
class Exemplar:
    question: str
    trace: str
    answer: str


@dataclass(frozen=True, kw_only=True)
class LatentSpec:
    """The latent level's settings (``level.latent``; seed card 004, :mod:`training.latent`), read as a schema."""

    n_symbols: int = setting(integer(1), 64)
    rounds: int = setting(integer(1), 2)
    max_abstract_tokens: int = setting(integer(1), 128)
    z_min: int = setting(integer(1), 16)
    z_max: int = setting(integer(1), 22)
    z_temperature: float = setting(number(0), 1.0)
    span_temperature: float = setting(number(0), 0.7)
    verbal_instruction: str = setting(text(), "Solve this using Level 1 (Full verbose).")
    verbal_style: str = setting(text(), "full natural-language reasoning, one sentence per step with its arithmetic")

    def check(self, group: str) -> None:
        if self.z_min > self.z_max:
            raise ConfigError(f"{group}.z_min ({self.z_min}) is above z_max ({self.z_max})")
        if self.z_max > self.max_abstract_tokens:
            raise ConfigError(f"{group}.z_max ({self.z_max}) is above max_abstract_tokens "
                              f"({self.max_abstract_tokens}): the trained spans could not be decoded")


@dataclass(frozen=True)
class Level:
    id: int
    name: str
    style: str  # one-line style spec, shown in reports
    renderer: str  # how the reference teacher writes this level (one of RENDERERS)
    target_chars: int  # the intended think length; reports compare against it
    instruction: str  # "Solve this using Level 4 (Ultra-compact)."
    exemplars: tuple[Exemplar, ...] = ()
    max_chars: int | None = None  # hard cap the renderer respects (level 5)
    latent: LatentSpec | None = None  # the latent level: it reasons in reserved symbols (training.latent)

    @property
    def tag(self) -> str:
        return "latent" if self.latent else f"L{self.id}"

    @property
    def teacher_level(self) -> Level:
        """The level the teacher writes traces at: this one, or for the latent level the verbal CoT of its
        Phase A (level 1's instruction and style, with this level's renderer and exemplars)."""
        if self.latent is None:
            return self
        return replace(self, instruction=self.latent.verbal_instruction, style=self.latent.verbal_style, latent=None)


def level_from_config(cfg: Mapping[str, Any] | None, valid: Sequence[str] = ()) -> Level:
    """Build a :class:`Level` from ``cfg.level``, with one-line errors for bad entries.

    ``valid`` names the selectable levels, for the message when none was selected.
    """
    if cfg is None:
        choices = f" (valid: {', '.join(valid)})" if valid else ""
        raise ConfigError(f"no compression level selected: add +level=N to the command{choices}")
    missing = [key for key in ("id", "name", "style", "renderer", "target_chars", "instruction") if cfg.get(key) is None]
    if missing:
        raise ConfigError(f"level config is missing {', '.join(missing)}")
    if cfg["renderer"] not in RENDERERS:
        raise ConfigError(f"level {cfg['id']}: unknown renderer {cfg['renderer']!r} (valid: {', '.join(RENDERERS)})")
    if int(cfg["target_chars"]) <= 0:
        raise ConfigError(f"level {cfg['id']}: target_chars must be positive")
    exemplars = []
    for i, ex in enumerate(cfg.get("exemplars") or []):
        if not all(str(ex.get(key) or "").strip() for key in ("question", "trace", "answer")):
            raise ConfigError(f"level {cfg['id']}: exemplar {i} needs a question, a trace and an answer")
        exemplars.append(Exemplar(str(ex["question"]), str(ex["trace"]), str(ex["answer"])))
    max_chars = cfg.get("max_chars")
    latent = _latent_spec(cfg["id"], cfg.get("latent"))
    return Level(
        id=int(cfg["id"]),
        name=str(cfg["name"]),
        style=str(cfg["style"]),
        renderer=str(cfg["renderer"]),
        target_chars=int(cfg["target_chars"]),
        instruction=str(cfg["instruction"]),
        exemplars=tuple(exemplars),
        max_chars=int(max_chars) if max_chars is not None else None,
        latent=latent,
    )


def _latent_spec(level_id: Any, cfg: Mapping[str, Any] | None) -> LatentSpec | None:
    """``level.latent`` read through its schema; a key it does not know is refused (a misspelt ``round`` would
    otherwise leave the default silently in force)."""
    if cfg is None:
        return None
    known = [f.name for f in fields(LatentSpec)]
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise ConfigError(f"level {level_id}: unknown latent setting(s) {', '.join(unknown)} "
                          f"(valid: {', '.join(known)})")
    return read_settings(LatentSpec, cfg, "level.latent")


def user_message(level: Level, question: str) -> str:
    return f"{level.instruction}\nProblem: {question.strip()}"


def exemplar_text(exemplars: Sequence[Exemplar], open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> str:
    """Worked exemplars as plain text, for a system message."""
    return "".join(f"\n\nExample {i}\nProblem: {ex.question.strip()}\n"
                   f"Solution:\n{format_completion(ex.trace, ex.answer, open_tag, close_tag)}"
                   for i, ex in enumerate(exemplars, start=1))


def build_prompt(
    level: Level,
    question: str,
    system: str | None = None,
    n_shots: int = 0,
    open_tag: str = THINK_OPEN,
    close_tag: str = THINK_CLOSE,
    shots_in_system: bool = False,
) -> list[dict[str, str]]:
    """Chat messages asking for ``question`` at ``level``, with ``n_shots`` exemplars.

    Exemplars are earlier chat turns, or with ``shots_in_system`` text in the system message:
    for chat templates that drop the think block of earlier assistant turns (Qwen3's), which
    would otherwise show the model answers without their reasoning.
    """
    if n_shots > len(level.exemplars):
        raise ConfigError(f"{n_shots} shots requested but level {level.id} has {len(level.exemplars)} exemplars")
    shots = level.exemplars[:n_shots]
    if shots_in_system and shots:
        system = (system or "") + exemplar_text(shots, open_tag, close_tag)
        shots = ()
    messages = [{"role": "system", "content": system.strip()}] if system else []
    for ex in shots:
        messages.append({"role": "user", "content": user_message(level, ex.question)})
        messages.append({"role": "assistant", "content": format_completion(ex.trace, ex.answer, open_tag, close_tag)})
    messages.append({"role": "user", "content": user_message(level, question)})
    return messages


def template_keeps_earlier_think(tokenizer, chat_template_kwargs: Mapping[str, Any] | None = None,
                                 open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE) -> bool:
    """Whether ``tokenizer``'s chat template shows the think block of an earlier assistant turn."""
    probe = "cot-pareto-probe-7f3a"
    messages = [{"role": "user", "content": "q"},
                {"role": "assistant", "content": format_completion(probe, "1", open_tag, close_tag)},
                {"role": "user", "content": "q"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                             **dict(chat_template_kwargs or {}))
    return probe in rendered
