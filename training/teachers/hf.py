"""A local transformers model as teacher (``teacher=hf``), or the student itself (``teacher=self``).

The model is loaded for the traces stage only, asked in batches (prompts sorted by
length, left-padded: :func:`training.evaluation.generation.generate`), and freed before the
student is loaded for training. With ``n_samples`` > 1 every problem is asked that
many times under sampling; paired with ``filter.select=shortest`` this is
length-biased rejection sampling: keep the shortest correct trace of N.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from training.common.errors import ConfigError
from training.config.schema import HFTeacherSettings
from training.config.settings import read_settings
from training.data.levels import Level
from training.data.problems import Problem
from training.evaluation.generation import generate
from training.models.hardware import apply_threads, resolve_hardware
from training.teachers.base import Trace
from training.teachers.prompts import teacher_prompts

log = logging.getLogger(__name__)


class HFTeacher:
    def __init__(self, model: Mapping[str, Any], hardware: Mapping[str, Any], sampling: Mapping[str, Any], *,
                 name: str = "hf", batch_size: int = 16, n_shots: int = 2, exemplars: str = "level",
                 system: str | None = None, adapter: str | None = None, quantization: str = "none") -> None:
        # Every setting, the sampling and model settings too, is checked before the model loads.
        settings = read_settings(HFTeacherSettings, {
            "model": model, "hardware": hardware, "sampling": sampling, "name": name, "batch_size": batch_size,
            "n_shots": n_shots, "exemplars": exemplars, "system": system, "adapter": adapter,
            "quantization": quantization}, "teacher")
        self.name = settings.name
        self.adapter = settings.adapter  # a LoRA adapter on the model: a previous round's student (self-distillation)
        self.quantization = settings.quantization  # nf4: an 8B teacher in ~6 GB of an 11 GB Turing card
        self.model_cfg, self.hardware_cfg, self.sampling = model, hardware, dict(sampling)
        self.batch_size, self.n_shots, self.exemplars = settings.batch_size, settings.n_shots, settings.exemplars
        self.system = settings.system
        self.stats: dict[str, Any] = {}

    def generate(self, problems: Sequence[Problem], level: Level, *, n_samples: int = 1,
                 seed: int = 0) -> list[list[Trace]]:
        if n_samples > 1 and not self.sampling.get("do_sample"):
            raise ConfigError(f"teacher {self.name}: n_samples={n_samples} with greedy decoding gives {n_samples} "
                              "identical traces; set teacher.sampling.do_sample=true or n_samples=1")
        think = self.model_cfg["think"]
        prompts = teacher_prompts(problems, level, n_shots=self.n_shots, exemplars=self.exemplars,
                                  system=self.system, open_tag=think["open"], close_tag=think["close"])
        # Each prompt n_samples times in a row: one generate batch holds several samples of a problem.
        asked = [prompt for prompt in prompts for _ in range(n_samples)]
        outputs, seconds = self._complete(asked, seed)
        traces: list[list[Trace]] = []
        for i, problem in enumerate(problems):
            samples = outputs[i * n_samples:(i + 1) * n_samples]
            # An empty sample is the filter's empty_output, not a teacher error: errors keep the whole traces
            # stage out of the stage cache, and N samples of a weak student are often empty.
            traces.append([Trace(problem.id, s, out.text, self.name) for s, out in enumerate(samples)])
        tokens = sum(out.completion_tokens for out in outputs)
        self.stats = {"completions": len(outputs), "generated_tokens": tokens, "seconds": round(seconds, 3),
                      "truncated": sum(not out.stopped for out in outputs),
                      "empty": sum(not out.text.strip() for out in outputs)}
        log.info("teacher %s: %d completions (%d per problem), %d tokens in %.1fs (%.0f tokens/s), %d cut at "
                 "max_new_tokens", self.name, len(outputs), n_samples, tokens, seconds,
                 tokens / seconds if seconds else 0, self.stats["truncated"])
        return traces

    def _complete(self, prompts: list[list[dict[str, str]]], seed: int):
        from training.models.loading import release_memory, stop_token_id
        from training.models.student import attach_adapter, load_student

        hardware = resolve_hardware(self.hardware_cfg)
        apply_threads(hardware)
        # Loaded as the student is; where bitsandbytes cannot run NF4, a teacher may as well sample from
        # full-precision weights (logged).
        teacher = load_student(self.model_cfg, {"quantization": self.quantization, "allow_unquantized_fallback": True},
                               hardware)
        if self.adapter:
            attach_adapter(teacher, Path(self.adapter))
        log.info("teacher %s: %s on %s (%s compute, %s weights), %d prompts in batches of %d", self.name,
                 self.model_cfg["name"], hardware.device, hardware.precision, teacher.quantization, len(prompts),
                 self.batch_size)
        try:
            return generate(teacher.model, teacher.tokenizer, prompts, self.sampling, batch_size=self.batch_size,
                            stop_token_id=stop_token_id(teacher.tokenizer, self.model_cfg),
                            chat_template_kwargs=self.model_cfg.get("chat_template_kwargs"), seed=seed,
                            desc=f"teacher {self.name}")
        finally:
            # The student loads next (possibly on the same GPU): do not hold two models at once.
            teacher.model = None
            release_memory()
