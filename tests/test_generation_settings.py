"""Sampling settings, hardware resolution and the QLoRA builders: config in, library objects out."""

import pytest
import torch

from tests.conftest import compose_config
from training.common.errors import ConfigError
from training.evaluation.generation import (
    generation_kwargs,
    presence_penalty_processor,
    regroup_limits,
    shared_prefix,
    timing_summary,
)
from training.models.hardware import resolve_hardware
from training.sft.trainer import _warmup, build_peft_config, build_quant_config, build_sft_config


def test_greedy_pins_sampling_knobs_off():
    kwargs = generation_kwargs(compose_config("+level=4").sampling)
    assert kwargs == {"max_new_tokens": 128, "repetition_penalty": 1.0, "do_sample": False, "temperature": None,
                      "top_p": None, "top_k": None}


def test_sampling_settings_are_validated():
    sample = dict(compose_config("+level=4", "sampling=sample").sampling)
    assert generation_kwargs(sample)["top_k"] == 20 and generation_kwargs({**sample, "top_k": 0})["top_k"] is None
    for key, value, message in [("temperature", 0, "temperature must be positive"), ("top_p", 1.5, "top_p"),
                                ("top_k", -1, "top_k"), ("max_new_tokens", 0, "max_new_tokens"),
                                ("repetition_penalty", 0, "repetition_penalty")]:
        with pytest.raises(ConfigError, match=message):
            generation_kwargs({**sample, key: value})


def test_presence_penalty_counts_generated_tokens_once():
    ids = torch.tensor([[5, 1, 2, 2], [5, 5, 3, 0]])  # prompt width 2, then generated tokens
    scores = torch.zeros(2, 6)
    out = presence_penalty_processor(1.5, prompt_length=2)(ids, scores)
    assert out[0].tolist() == [0, 0, -1.5, 0, 0, 0]  # token 2 twice: penalised once; prompt token 5 not at all
    assert out[1].tolist() == [-1.5, 0, 0, -1.5, 0, 0]


def test_regroup_limits_double_up_to_max_new_tokens():
    assert regroup_limits(128, 32) == [32, 64, 128]
    assert regroup_limits(100, 32) == [32, 64, 100]
    assert regroup_limits(64, 32) == [32, 64]
    assert regroup_limits(32, 32) == [32]
    assert regroup_limits(16, 32) == [16]
    assert regroup_limits(128, 0) == [128]  # 0: one pass per batch


def test_shared_prefix_leaves_every_prompt_a_token_of_its_own():
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 9]]) == [1, 2]
    assert shared_prefix([[1, 2, 3], [1, 2, 3, 4]]) == [1, 2]  # the shorter prompt keeps its last token
    assert shared_prefix([[1, 2], [3, 4]]) == [] and shared_prefix([[1, 2, 3]]) == []


def test_timing_summary_splits_prefill_and_decode():
    timing = {"prefill_seconds": 2.0, "decode_seconds": 4.0, "prompt_tokens": 1000, "prefill_computed_tokens": 300,
              "shared_prefix_tokens": 20, "generated_tokens": 410, "rows": 10, "batches": 1}
    summary = timing_summary(timing)
    # The first token of each row comes from the prefill's logits: 400 decoded tokens in 4 s.
    assert summary["eval_prefill_tokens_per_second"] == 500.0 and summary["eval_decode_tokens_per_second"] == 100.0
    assert summary["eval_prefill_computed_tokens"] == 300 and summary["eval_shared_prefix_tokens"] == 20


@pytest.mark.parametrize(
    ("choice", "cuda", "bf16", "device", "precision"),
    [("cpu", False, False, "cpu", "fp32"), ("auto", False, False, "cpu", "fp32"), ("auto", True, True, "cuda", "bf16"),
     ("auto", True, False, "cuda", "fp16"), ("turing", True, True, "cuda", "fp16"), ("a100", True, True, "cuda", "bf16")],
)
def test_hardware_resolution(choice, cuda, bf16, device, precision):
    hw = resolve_hardware(compose_config("+level=4", f"hardware={choice}").hardware, cuda_available=cuda,
                          bf16_supported=bf16, cpu_bf16_flags=[])  # a CPU without native bf16
    assert (hw.device, hw.precision) == (device, precision) and hw.num_threads >= 1


def test_impossible_hardware_is_a_config_error():
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        resolve_hardware(compose_config("+level=4", "hardware=a100").hardware, cuda_available=False, bf16_supported=False)
    with pytest.raises(ConfigError, match="no bf16 support"):
        resolve_hardware(compose_config("+level=4", "hardware=a100").hardware, cuda_available=True, bf16_supported=False)
    with pytest.raises(ConfigError, match="fp16 is a GPU precision"):
        resolve_hardware({"name": "x", "device": "cpu", "precision": "fp16"}, cuda_available=False,
                         bf16_supported=False)


def test_qlora_is_lora_plus_a_quant_config():
    cfg = compose_config("+level=4").train
    quant = build_quant_config(cfg, torch.float16)
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert quant.bnb_4bit_compute_dtype == torch.float16
    assert build_quant_config({**cfg, "quantization": "none"}, torch.float32) is None
    with pytest.raises(ConfigError, match="train.quantization"):
        build_quant_config({**cfg, "quantization": "int3"}, torch.float32)
    lora = build_peft_config(cfg)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.target_modules) == (16, 32, 0.05, "all-linear")
    assert build_peft_config({**cfg, "target_modules": ["q_proj", "v_proj"]}).target_modules == {"q_proj", "v_proj"}
    with pytest.raises(ConfigError, match="lora_r"):
        build_peft_config({**cfg, "lora_r": 0})


def test_sft_config_follows_the_hardware(tmp_path):
    cfg = compose_config("+level=4").train
    cpu = build_sft_config(cfg, resolve_hardware({"name": "cpu", "device": "cpu"}, cuda_available=False,
                                                 bf16_supported=False, cpu_bf16_flags=[]), tmp_path)
    assert cpu.use_cpu and not cpu.bf16 and not cpu.fp16 and not cpu.logging_nan_inf_filter
    assert (cpu.num_train_epochs, cpu.per_device_train_batch_size, cpu.learning_rate) == (1, 8, 1e-3)
    assert cpu.completion_only_loss is True
    hardware = resolve_hardware({"name": "cpu", "device": "cpu"})
    assert build_sft_config({**cfg, "completion_only_loss": False}, hardware, tmp_path).completion_only_loss is False
    with pytest.raises(ConfigError, match="train.epochs"):
        build_sft_config({**cfg, "epochs": 0}, resolve_hardware({"name": "cpu", "device": "cpu"}), tmp_path)
    assert _warmup(0.1) == 0.1 and _warmup(10) == 10 and isinstance(_warmup(10.0), int)
    with pytest.raises(ConfigError, match="warmup"):
        _warmup(-1)
