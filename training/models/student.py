"""The student a trial trains and evaluates: its base model (NF4 where asked), and a LoRA adapter attached to it.

Training, evaluation and the ``hf`` teacher all load a model through :func:`load_student`, so a teacher
sampled from the student's own weights is loaded exactly as the student is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.common.errors import ConfigError, DataError
from training.models.hardware import Hardware
from training.models.loading import load_model, load_tokenizer, model_path
from training.sft.trainer import resolve_quant_config

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")  # what PEFT's save_pretrained writes


@dataclass
class Student:
    model: Any
    tokenizer: Any
    path: str  # the folder the base weights came from
    quantization: str  # "nf4" or "none": what the weights actually are
    adapter: str = "none"  # "none", or the folder of the adapter the model now carries


def load_student(model_cfg: Mapping[str, Any], train_cfg: Mapping[str, Any], hardware: Hardware) -> Student:
    """The base model, NF4-quantised when ``train.quantization`` asks for it (and bitsandbytes can)."""
    path = model_path(model_cfg)
    tokenizer = load_tokenizer(model_cfg, path)
    quant = resolve_quant_config(train_cfg, hardware)
    model = load_model(model_cfg, dtype=hardware.dtype, device=hardware.device, quantization_config=quant,
                       attn_implementation=hardware.attn_implementation, path=path)
    log.info("model: %s from %s (%s weights, %s compute)", model_cfg["name"], path,
             "nf4" if quant is not None else hardware.precision, hardware.precision)
    return Student(model, tokenizer, path, "nf4" if quant is not None else "none")


def student_for_engine(model_cfg: Mapping[str, Any], adapter_dir: Path | None) -> Student:
    """The student without its weights, for an engine that loads its own (vLLM): the base's folder, its
    tokenizer (the adapter's extended one where the adapter brings reserved tokens), and the adapter, checked as
    :func:`attach_adapter` checks it. Loading the transformers copy only to free it again would cost a model
    load and, on a GPU, the memory vLLM wants."""
    path = model_path(model_cfg)
    student = Student(None, load_tokenizer(model_cfg, path), path, "none")
    if adapter_dir is not None:
        read_adapter_config(adapter_dir)
        student.tokenizer = _extended_tokenizer(student, adapter_dir) or student.tokenizer
        student.adapter = str(adapter_dir)
    return student


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """``adapter_dir``'s ``adapter_config.json``, checked for what loading it needs; cheap (no model).

    PEFT would otherwise fail deep inside layer construction (a string rank) or with a JSON traceback.
    """
    import json

    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        raise ConfigError(f"no LoRA adapter at {adapter_dir} (adapter_config.json missing)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; is this an adapter folder?") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(config, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(config).__name__}")
    if config.get("peft_type") != "LORA":
        raise DataError(f"{path}: peft_type must be \"LORA\", got {config.get('peft_type')!r}")
    rank, alpha, targets = config.get("r"), config.get("lora_alpha", 8), config.get("target_modules")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise DataError(f"{path}: \"r\" must be an integer >= 1, got {rank!r}")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
        raise DataError(f"{path}: \"lora_alpha\" must be a number > 0, got {alpha!r}")
    if not (targets is None or isinstance(targets, str)
            or (isinstance(targets, list) and all(isinstance(name, str) for name in targets))):
        raise DataError(f"{path}: \"target_modules\" must be a string or a list of module names, got {targets!r}")
    if not any((path.parent / name).is_file() for name in ADAPTER_WEIGHTS):
        # PEFT would take the folder for a hub repo id and say so, which points the user the wrong way.
        raise DataError(f"{path.parent}: no adapter weights ({' or '.join(ADAPTER_WEIGHTS)} missing)")
    return config


def saved_added_tokens(adapter_dir: Path) -> list[dict[str, Any]] | None:
    """The ``added_tokens`` list of the ``tokenizer.json`` saved with an adapter; None without one, or when it is not
    the tokenizers format. Read from the head of the file alone, not by loading the tokenizer: a plain adapter then
    costs nothing more to attach, and the config check reads it before any model loads."""
    import json

    path = Path(adapter_dir) / "tokenizer.json"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    start = text.find('"added_tokens"')
    if start < 0:
        return None
    try:
        added, _ = json.JSONDecoder().raw_decode(text, text.index("[", start))
    except ValueError:
        return None
    return added if isinstance(added, list) and all(isinstance(token, dict) for token in added) else None


def adapter_vocab_size(adapter_dir: Path) -> int | None:
    """The length of the tokenizer saved with an adapter (its highest added id + 1); None without ``tokenizer.json``."""
    added = saved_added_tokens(adapter_dir)
    if added is None:
        return None
    try:
        return max((int(token["id"]) for token in added), default=-1) + 1
    except (ValueError, KeyError, TypeError):
        return None  # not the tokenizers format: treat as a plain adapter


def _extended_tokenizer(student: Student, adapter_dir: Path):
    """The adapter's tokenizer when it holds tokens the student's lacks (the latent level's symbols), set up as
    the student's (chat template, padding); else None."""
    size = adapter_vocab_size(adapter_dir)
    if size is None or size <= len(student.tokenizer):
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    tokenizer.chat_template = student.tokenizer.chat_template  # the configured one, as load_tokenizer set it
    tokenizer.pad_token, tokenizer.padding_side = student.tokenizer.pad_token, student.tokenizer.padding_side
    return tokenizer


def attach_adapter(student: Student, adapter_dir: Path) -> None:
    """Load the LoRA adapter in ``adapter_dir`` onto the student.

    An adapter saved with a longer tokenizer (the latent level's reserved tokens) brings it along: the base
    is resized to it first (:func:`training.latent.vocabulary.resize_for`; the adapter holds the new rows'
    trained values), and it becomes the student's tokenizer.
    """
    from peft import PeftModel
    from safetensors import SafetensorError

    read_adapter_config(adapter_dir)
    tokenizer = _extended_tokenizer(student, adapter_dir)
    if tokenizer is not None:
        from training.latent.vocabulary import resize_for

        resize_for(student.model, tokenizer)  # a padded embedding (Qwen3-4B) may hold the new ids already
    try:
        student.model = PeftModel.from_pretrained(student.model, str(adapter_dir))
    except (ValueError, TypeError, KeyError, RuntimeError, OSError, SafetensorError) as err:
        # Corrupt weights, or weights made for another base model (shape mismatch): the wrong folder, not a bug.
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise DataError(f"cannot load the LoRA adapter {adapter_dir} onto {student.path}: "
                        f"{type(err).__name__}: {reason}") from None
    if tokenizer is not None:
        log.info("model: the adapter's tokenizer has %d tokens (the base's %d)", len(tokenizer),
                 len(student.tokenizer))
        student.tokenizer = tokenizer
    student.adapter = str(adapter_dir)
    log.info("model: loaded adapter %s", adapter_dir)
