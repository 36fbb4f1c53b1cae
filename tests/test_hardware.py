"""CPU precision detection (flags and a timing decide bf16 vs fp32), length-grouped batches, and the CPU LM head."""

from __future__ import annotations

import pytest
import torch

from sweep.cli import compose_config
from training.models import cpu_precision
from training.models.cpu_precision import choose_cpu_precision
from training.models.hardware import resolve_hardware
from training.sft.trainer import build_sft_config


def test_cpu_precision_needs_native_bf16_and_a_measured_gain():
    assert choose_cpu_precision([], None) == ("fp32", "cpu has no native bf16 (neither avx512_bf16 nor amx); fp32")
    precision, why = choose_cpu_precision(["avx512_bf16"], 3.1)
    assert precision == "bf16" and why == "cpu has avx512_bf16; bf16 matmul measured 3.10x fp32"
    precision, why = choose_cpu_precision(["amx"], 0.52)  # flags that promise, a timing that does not deliver
    assert precision == "fp32" and "only 0.52x" in why


def test_auto_on_cpu_follows_the_detection(monkeypatch):
    auto = compose_config("+level=4", "hardware=auto").hardware
    hw = resolve_hardware(auto, cuda_available=False, cpu_bf16_flags=["avx512_bf16"], cpu_bf16_speedup=3.1)
    assert (hw.device, hw.precision, hw.precision_reason) == ("cpu", "bf16", "cpu has avx512_bf16; bf16 matmul "
                                                                             "measured 3.10x fp32")
    assert resolve_hardware(auto, cuda_available=False, cpu_bf16_flags=["amx"], cpu_bf16_speedup=0.5).precision == "fp32"

    def no_timing(threads):
        raise AssertionError("a CPU without native bf16 is not timed")

    monkeypatch.setattr(cpu_precision, "measured_bf16_speedup", no_timing)
    assert resolve_hardware(auto, cuda_available=False, cpu_bf16_flags=[]).precision == "fp32"
    gpu = resolve_hardware(auto, cuda_available=True, bf16_supported=True)
    assert (gpu.precision, gpu.precision_reason) == ("bf16", "gpu supports bf16")


@pytest.mark.parametrize(("overrides", "precision"), [(("hardware=cpu",), "fp32"),
                                                      (("hardware=auto", "hardware.precision=fp32"), "fp32"),
                                                      (("hardware=auto", "hardware.precision=bf16"), "bf16")])
def test_a_configured_precision_is_not_second_guessed(overrides, precision):
    cfg = compose_config("+level=4", *overrides).hardware
    hw = resolve_hardware(cfg, cuda_available=False, cpu_bf16_flags=["avx512_bf16"], cpu_bf16_speedup=3.0)
    assert (hw.precision, hw.precision_reason) == (precision, f"hardware.precision={precision} in the config")


def test_the_timing_is_kept_on_disk(monkeypatch, tmp_path):
    monkeypatch.setenv("COT_PARETO_CACHE", str(tmp_path))
    rates = {torch.float32: 200.0, torch.bfloat16: 620.0}
    monkeypatch.setattr(cpu_precision, "matmul_gflops", lambda dtype, threads: rates[dtype])
    cpu_precision.measured_bf16_speedup.cache_clear()
    assert cpu_precision.measured_bf16_speedup(3) == 3.1
    assert len(list((tmp_path / "hardware").glob("cpu-bf16-*.json"))) == 1
    cpu_precision.measured_bf16_speedup.cache_clear()
    monkeypatch.setattr(cpu_precision, "matmul_gflops", lambda dtype, threads: pytest.fail("measured twice"))
    assert cpu_precision.measured_bf16_speedup(3) == 3.1  # read back, not measured again
    cpu_precision.measured_bf16_speedup.cache_clear()


def test_training_batches_are_grouped_by_length_and_bf16_autocasts(tmp_path):
    cfg = compose_config("+level=4").train
    bf16 = resolve_hardware({"name": "x", "device": "cpu", "precision": "bf16"}, cuda_available=False)
    args = build_sft_config(cfg, bf16, tmp_path)
    assert args.train_sampling_strategy == "group_by_length" and args.bf16 and args.use_cpu
    assert build_sft_config({**cfg, "group_by_length": False}, bf16, tmp_path).train_sampling_strategy == "random"


def test_masked_lm_head_gives_the_models_own_loss():
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from training.models.lm_head import supports_masked_head, use_masked_lm_head

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    ids = torch.randint(0, 97, (3, 12))
    labels = ids.clone()
    labels[:, :5] = -100  # the prompt
    labels[2, 9:] = -100  # padding
    expected = model(input_ids=ids, labels=labels).loss
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    assert supports_masked_head(model)
    use_masked_lm_head(model)
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    assert torch.allclose(out.loss, expected, atol=1e-5)
    assert torch.allclose(-out.log_probs.sum() / out.label_mask.sum(), expected, atol=1e-5)
    assert int(out.label_mask.sum()) == int((labels[:, 1:] != -100).sum())
    out.loss.backward()
    assert model.model.layers[0].mlp.up_proj.weight.grad is not None
    assert model(input_ids=ids).logits.shape == (3, 12, 97)  # generation and evaluation keep the plain forward
