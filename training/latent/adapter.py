"""The latent level's adapter: a trial's LoRA plus the reserved rows of the embedding (and of an untied LM head).

Why PEFT's ``trainable_token_indices`` and not the card's ``modules_to_save`` on the embedding and head: the
card trained both matrices whole (842.9 M of 4.86 B parameters for Qwen3-4B) so that the 66 new rows could
move; every other row moved too, with optimizer state for all of them and a full copy of both matrices in
each saved adapter. ``trainable_token_indices`` trains a ``(rows, hidden)`` block that replaces exactly those
rows in the forward (``index_copy``), so the pretrained rows stay bit-identical by construction. Measured on
tiny-qwen3 (151,735 x 64 tied embedding once extended) with the trial's default LoRA (r=16 on all linear
layers): 36,992 trainable parameters (32,768 LoRA + 66 x 64 rows) and a 152 KB adapter file, against
19,454,848 trainable and 78 MB (233 MB with PEFT's default save) for ``modules_to_save=["embed_tokens",
"lm_head"]``, which also unties the head from the embedding and trains a second copy of it.

Tied and untied heads (PEFT 0.21.2, ``peft.utils.other.set_additional_trainable_modules``): a list of indices wraps the
input embedding only; when the config ties the embeddings the head is wrapped with the *same* delta, but
when it does not (Qwen3-4B) the head's rows would stay at their initial values and the model could never
learn to emit a symbol. So the indices are given per module, the embedding and the head by name; with tied
weights and equal indices PEFT keeps one shared delta (tiny-qwen3, SmolLM2-135M), else one per matrix.

Saving: with a resized vocabulary PEFT's default (``save_embedding_layers="auto"``) writes the whole
embedding and head into the adapter, because their size differs from the base config's. Nothing needs them:
every row beyond the base vocabulary is a reserved row (the tokenizer grew by those alone), whose trained
value the adapter holds, so a base resized again at load (:func:`training.models.student.attach_adapter`)
computes the same function whatever its fresh rows were initialised to (transformers samples them around
the mean); where the embedding is padded beyond the tokenizer (Qwen3-4B: 151,936 rows for 151,669 tokens)
nothing is resized and the reserved ids replace padding rows. :func:`save_latent_adapter` saves without them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.latent.vocabulary import AbstractVocab


def reserved_rows(vocab: AbstractVocab, model) -> dict[str, list[int]]:
    """``trainable_token_indices`` for ``model``: the reserved ids in its input embedding and in its LM head."""
    names = {id(module): name for name, module in model.named_modules()}
    rows = sorted(vocab.ids)
    layers = {names[id(model.get_input_embeddings())]: rows}
    head = model.get_output_embeddings()
    if head is not None:  # tied or not: PEFT shares one delta between tied matrices (see the module doc)
        layers[names[id(head)]] = rows
    return layers


def latent_lora_config(lora_kwargs: Mapping[str, Any], vocab: AbstractVocab, model):
    """The trial's LoRA (``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules``: ``_lora_settings``) plus
    the reserved rows of ``model`` (the base model, before ``get_peft_model``) as trainable."""
    from peft import LoraConfig

    return LoraConfig(**dict(lora_kwargs), bias="none", task_type="CAUSAL_LM",
                      trainable_token_indices=reserved_rows(vocab, model))


def save_latent_adapter(model, tokenizer, folder: Path) -> None:
    """The adapter (LoRA and the reserved rows, not the whole embedding) and the extended tokenizer, together."""
    model.save_pretrained(folder, save_embedding_layers=False)
    tokenizer.save_pretrained(folder)


def token_rows(model) -> dict[str, Any]:
    """The embedding and LM head as the PEFT model computes with them (reserved rows replaced), by module name.

    A tied head is the embedding itself and is not listed twice.
    """
    from peft.utils.other import TrainableTokensWrapper

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    rows: dict[str, Any] = {}
    seen: set[int] = set()
    for name, module in base.named_modules():
        if isinstance(module, TrainableTokensWrapper):
            layer = module.token_adapter
            weight = layer.get_merged_weights(layer.active_adapters)
            key = layer.get_base_layer().weight.data_ptr()
            if key not in seen:
                seen.add(key)
                rows[name] = weight.detach().clone()
    return rows
