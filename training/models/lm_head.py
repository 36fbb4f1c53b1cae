"""The training loss's LM head on CPU: log-probabilities of the completion tokens only, through plain autograd.

TRL 1.16's SFTTrainer computes the loss through its fused, chunked LM head. On a GPU with
Triton that saves memory; on CPU it falls back to torch ops over every position's
``[tokens, vocab]`` tile, recomputes the tiles in backward and accumulates the gradient in
fp32 even under bf16 autocast. Profiled on SmolLM2-135M (49,152-token vocabulary), 2 cores,
bf16: 3.4 s of a 7.4 s step, more than every other matmul together.

:func:`use_masked_lm_head` swaps it, on CPU only, for what TRL does on Triton devices written
in plain torch: project only the positions whose label counts (the completion; the prompt's
logits were computed and thrown away), then ``log_softmax`` with ordinary autograd. The
output is the same ``FusedCausalLMOutput`` TRL's ``compute_loss`` reads (log-probabilities,
entropy and top-1 for its logged metrics, the label mask), so the loss is the same number.
"""

from __future__ import annotations

import types
from typing import Any

# Logit transforms TRL's head applies and this one does not: a model that has one keeps TRL's head.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                     "logits_scaling")


def supports_masked_head(model) -> bool:
    """Whether ``model`` (the transformers model under the PEFT wrapper) projects its logits plainly."""
    config = model.config.get_text_config()
    return not any(getattr(config, name, None) is not None for name in _LOGIT_TRANSFORMS)


def use_masked_lm_head(model) -> None:
    """Make ``model(..., labels=..., fused_lm_head=True)`` score only the labelled positions, in plain autograd.

    ``model`` is the transformers model TRL patched (``peft_model.get_base_model()``); calls without
    ``fused_lm_head`` (generation, evaluation) still go to TRL's forward, which hands them to the original.
    """
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    trl_forward = model.forward

    def forward(self, *args: Any, fused_lm_head: bool = False, labels=None, shift_labels=None,
                num_items_in_batch=None, **kwargs: Any):
        if not fused_lm_head or shift_labels is not None or kwargs.get("output_router_logits"):
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        targets = labels[:, 1:].to(hidden.device)
        mask = targets != -100
        wanted = targets[mask]
        # Under autocast the projection runs in bf16; the softmax over the vocabulary in fp32, as transformers' loss.
        logits = self.get_output_embeddings()(hidden[mask]).float()
        log_softmax = torch.log_softmax(logits, dim=-1)
        picked = log_softmax.gather(-1, wanted.unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():  # for TRL's logged entropy and token accuracy only
            entropy = -(log_softmax.exp() * log_softmax).sum(-1)
            is_top1 = logits.argmax(-1) == wanted

        def spread(values):  # back to (batch, seq_len - 1), zero where the label is ignored
            return values.new_zeros(mask.shape).masked_scatter(mask, values)

        log_probs = spread(picked)
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=spread(entropy), is_top1=spread(is_top1),
                                   label_mask=mask)

    model.forward = types.MethodType(forward, model)
