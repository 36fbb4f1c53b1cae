"""The model evaluation generates with: on a CPU computing in bf16, a plain bf16 copy of the student.

A trained student is NF4 base layers plus fp32 LoRA matrices, fp32 norms and fp32
embeddings (``prepare_model_for_kbit_training`` upcasts them). Generating with it on
a CPU runs, every step, bitsandbytes' 4-bit kernel for each base layer, two small
fp32 matmuls per LoRA pair and an fp32 head over the whole vocabulary. Evaluation
only reads the weights, so it can fold them once: each linear layer becomes one
dense bf16 matrix, its NF4 weight as the layer itself computes with it plus the LoRA
update ``scaling * B @ A``. Measured on SmolLM2-135M (2 cores, avx512_bf16): a
decode step of a 32-row batch fell from 226 ms (NF4 + LoRA, fp32) or 164 ms
(the same under ``torch.autocast`` bf16) to 76 ms.

The copy is the same function as the student up to bf16 rounding; on fp32 hardware,
and on GPUs (where the 4-bit kernels are fast and memory is scarce), the student is
used as it is. A latent adapter's reserved rows (PEFT's ``trainable_token_indices``) fold
in the same way: the embedding (and an untied head) as the wrapper computes with it.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def wants_dense_copy(device: str, precision: str) -> bool:
    return device == "cpu" and precision == "bf16"


def effective_weight(layer) -> Any:
    """``layer``'s weight as its own forward computes with it, in fp32.

    The layer's output for the identity matrix is its weight, transposed: this reads
    NF4 weights whatever bitsandbytes' storage (it repacks them for its CPU kernel
    at the first inference call), and any compute dtype, without private APIs.
    """
    import torch

    eye = torch.eye(layer.in_features, dtype=torch.float32, device=layer.weight.device)
    with torch.inference_mode():
        out = layer(eye)
        if getattr(layer, "bias", None) is not None:
            out = out - layer.bias.to(out.dtype)
        return out.t().float()


def _dense_state_dict(base) -> dict[str, Any]:
    """Parameter name (as in a plain model) -> fp32 tensor, LoRA updates and trained token rows folded in."""
    import bitsandbytes as bnb
    from peft.tuners.lora import LoraLayer

    from training.latent.adapter import token_rows

    # The latent level's embedding (and untied head) with its reserved rows replaced; a tied head is the
    # embedding again, tied once more in the copy.
    state: dict[str, Any] = {f"{name}.weight": weight.float() for name, weight in token_rows(base).items()}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            inner = module.get_base_layer()
            weight = effective_weight(inner) if isinstance(inner, bnb.nn.Linear4bit) else inner.weight.float()
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    if module.use_dora.get(adapter):
                        raise NotImplementedError("DoRA adapters are not folded")
                    weight = weight + module.get_delta_weight(adapter).float()
            state[f"{name}.weight"] = weight
            if inner.bias is not None:
                state[f"{name}.bias"] = inner.bias.float()
        elif isinstance(module, bnb.nn.Linear4bit) and not name.endswith(".base_layer"):  # not one LoRA wraps
            state[f"{name}.weight"] = effective_weight(module)
            if module.bias is not None:
                state[f"{name}.bias"] = module.bias.float()
    for name, param in base.named_parameters():
        if "lora_" in name or ".base_layer." in name or ".token_adapter." in name or name in state:
            continue
        state[name] = param.float()
    return state


def dense_copy(model, dtype):
    """A plain transformers model in ``dtype`` computing what ``model`` (NF4 and/or LoRA) computes."""
    from transformers import AutoModelForCausalLM

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = copy.deepcopy(base.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    state = _dense_state_dict(base)
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every weight is overwritten below: a random init would be seconds of waste
        dense = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=config._attn_implementation)
    missing, unexpected = dense.load_state_dict({key: value.to(dtype) for key, value in state.items()}, strict=False)
    dense.tie_weights()  # a tied head (SmolLM2, Qwen3 small) is the loaded embedding again
    loaded = {dense.get_parameter(key).data_ptr() for key in state if key not in unexpected}
    unset = [key for key in missing if dense.get_parameter(key).data_ptr() not in loaded]  # tied weights are set
    if unset or unexpected:
        raise RuntimeError(f"dense copy: no weights for {unset[:5]}, no place for {unexpected[:5]}")
    dense.generation_config = copy.deepcopy(base.generation_config)
    return dense.to(next(base.parameters()).device).eval()


@dataclass
class InferenceModel:
    model: Any
    note: str  # what generates, for the log
    autocast: bool = False  # generate under torch.autocast("cpu", bfloat16)


def inference_model(model, device: str, precision: str) -> InferenceModel:
    """The dense bf16 copy where it pays, else ``model`` itself (under bf16 autocast if the copy cannot be made)."""
    if not wants_dense_copy(device, precision):
        return InferenceModel(model, f"the student as it is ({precision} on {device})")
    import torch

    try:
        return InferenceModel(dense_copy(model, torch.bfloat16), "a dense bf16 copy (NF4 weights and LoRA folded in)")
    except (ImportError, NotImplementedError) as err:
        log.warning("eval: no dense copy (%s); generating under bf16 autocast", err)
        return InferenceModel(model, "the student under bf16 autocast", autocast=True)
