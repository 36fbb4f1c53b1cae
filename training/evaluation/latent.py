"""Evaluating at the latent level: its reserved vocabulary read from the adapter, the span's statistics, and the
merged model the vLLM backend serves.

A latent adapter's completion is ``<latent><z07><z41>...</latent>`` then the answer. The span is the level's think
block: graded with the markers as the think tags, and its tokens counted with the adapter's own
``tokenizer.json``, where each symbol is one token (the base tokenizer splits ``<z07>`` into several). Decoding
writes the added tokens with nothing between them (``<z07><z41>``), so the span's text is the symbols alone.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from training.common.errors import ConfigError
from training.data.levels import LatentSpec, Level
from training.grading.completions import think_text
from training.latent.vocabulary import CLOSE, OPEN, AbstractVocab, abstract_vocab, symbol_indices, symbol_names
from training.models.student import saved_added_tokens

log = logging.getLogger(__name__)

NEEDS_ADAPTER = ("the latent level needs an adapter trained at it: +level=abstract with train in stages, "
                 "or adapter=PATH to one")
MERGED_DIR = "merged"  # <run dir>/merged/: the base with the adapter merged in, for vLLM


def check_latent_eval(level: Level, thinking: str, n_shots: int, adapter: str, trains: bool) -> None:
    """ConfigError for an evaluation the latent level cannot have, before any stage runs. ``adapter`` is the
    config's (``auto``, ``none`` or a folder); ``trains``: the train stage runs and writes the adapter itself."""
    if level.latent is None:
        return
    if thinking != "on":
        raise ConfigError(f"eval.thinking={thinking} has no meaning at the latent level: it reasons in its span "
                          "of symbols, which has no no-think form (use eval.thinking=on)")
    if n_shots:
        raise ConfigError(f"eval.n_shots={n_shots}: the latent level takes no exemplars (its inherited ones are "
                          "verbal, not spans of symbols); use eval.n_shots=0")
    if adapter == "none":
        raise ConfigError(f"{NEEDS_ADAPTER} (adapter=none is the base model, which has no reserved tokens)")
    missing = None if trains or adapter == "auto" else missing_latent_tokens(Path(adapter), level.latent.n_symbols)
    if missing:
        raise ConfigError(f"{NEEDS_ADAPTER}; {adapter} lacks {missing}")


def missing_latent_tokens(adapter_dir: Path, n_symbols: int) -> str | None:
    """What an adapter folder's ``tokenizer.json`` lacks of the reserved tokens, in words; None when it holds them
    all, or when there is no such folder (loading it says so). Read without loading the tokenizer."""
    if not adapter_dir.is_dir():
        return None
    if not (adapter_dir / "tokenizer.json").is_file():
        return "a tokenizer.json (a latent adapter is saved with its extended tokenizer)"
    try:
        tokens = saved_added_tokens(adapter_dir)
    except UnicodeDecodeError:
        tokens = None
    if tokens is None:
        return None  # not the tokenizers format: loading it says what is wrong
    added = {token.get("content") for token in tokens}
    names = [*symbol_names(n_symbols), OPEN, CLOSE]
    absent = [name for name in names if name not in added]
    if not absent:
        return None
    return f"the reserved tokens {', '.join(absent[:3])}{'...' if len(absent) > 3 else ''} (level.latent.n_symbols=" \
           f"{n_symbols})"


def latent_vocab(tokenizer, spec: LatentSpec, adapter: str | Path | None) -> AbstractVocab:
    """The reserved tokens' ids in the student's tokenizer once the adapter is attached (it brings them along)."""
    if adapter is None:
        raise ConfigError(NEEDS_ADAPTER)
    try:
        return abstract_vocab(tokenizer, spec.n_symbols)
    except ConfigError as err:
        raise ConfigError(f"{NEEDS_ADAPTER}; the adapter {adapter} does not fit: {err}") from None


def span_symbols(output: str, symbols: Sequence[str]) -> int:
    """How many reserved symbols the completion's span holds (everything in it, when it holds nothing else)."""
    span = think_text(output, OPEN, CLOSE) or ""
    return len(symbol_indices(span, symbols))


def add_span_stats(rows: list[dict[str, Any]], spec: LatentSpec) -> dict[str, Any]:
    """Each row's ``span_symbols``, and the metrics of the spans: the level's flag, their mean length and the share
    cut at ``max_abstract_tokens`` (the closing marker forced there)."""
    symbols = symbol_names(spec.n_symbols)
    for row in rows:
        row["span_symbols"] = span_symbols(row["output"], symbols)
    lengths = [row["span_symbols"] for row in rows]
    return {"latent": True, "max_abstract_tokens": spec.max_abstract_tokens,
            "mean_span_symbols": round(statistics.fmean(lengths), 3) if lengths else 0.0,
            "span_at_cap_rate": round(sum(n >= spec.max_abstract_tokens for n in lengths) / len(lengths), 5)
            if lengths else 0.0}


def save_merged(model_cfg: Mapping[str, Any], adapter_dir: Path, out_dir: Path, *, dtype, device: str) -> Path:
    """The base model in ``dtype`` (never NF4) with the latent adapter merged in, saved with the adapter's
    extended tokenizer (and the configured chat template) into ``out_dir``: what vLLM loads, as its LoRA requests
    cannot carry the reserved embedding rows. Replaced whole on each evaluation: it is the adapter's, not cached."""
    from training.common.atomic import replace_atomically
    from training.models.loading import load_model, load_tokenizer, model_path, release_memory
    from training.models.student import Student, attach_adapter

    path = model_path(model_cfg)
    student = Student(load_model(model_cfg, dtype=dtype, device=device, path=path),
                      load_tokenizer(model_cfg, path), path, "none")
    attach_adapter(student, adapter_dir)  # resizes the base and takes the adapter's tokenizer
    merged, tokenizer = student.model.merge_and_unload(), student.tokenizer

    def build(tmp: Path) -> None:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    replace_atomically(out_dir, build)
    student.model = merged = None
    release_memory()
    log.info("eval: the adapter merged into the base (%s) for vLLM: %s", dtype, out_dir)
    return out_dir
