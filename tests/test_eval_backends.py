"""Choosing the evaluation backend, and the vLLM sampling settings the sampling group maps to."""

import pytest

from tests.conftest import compose_config
from training.common.errors import ConfigError
from training.evaluation.backends import choose_backend, vllm_installed, vllm_sampling_kwargs


def test_auto_names_the_backend_and_why():
    assert choose_backend("auto", "cuda", vllm_available=True) == ("vllm", "vLLM is installed and the trial runs on a GPU")
    assert choose_backend("auto", "cuda", vllm_available=False) == ("transformers", "vLLM is not installed")
    assert choose_backend("auto", "cpu", vllm_available=True)[0] == "transformers"
    assert choose_backend("transformers", "cuda", vllm_available=True) == ("transformers", "requested")
    # This machine: the default config evaluates with transformers, and says why.
    backend, why = choose_backend(compose_config("+level=4").eval.backend, "cpu")
    assert backend == "transformers" and why in ("vLLM is not installed", "vLLM needs a CUDA GPU and this trial runs on cpu")


def test_impossible_vllm_requests_are_config_errors():
    with pytest.raises(ConfigError, match="vLLM is not installed"):
        choose_backend("vllm", "cuda", vllm_available=False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU; this trial runs on cpu"):
        choose_backend("vllm", "cpu", vllm_available=True)
    with pytest.raises(ConfigError, match="eval.backend='tgi' is not one of"):
        choose_backend("tgi", "cuda")
    assert isinstance(vllm_installed(), bool)


def test_vllm_sampling_matches_the_sampling_group():
    greedy = vllm_sampling_kwargs(compose_config("+level=4").sampling, stop_token_id=7, seed=42)
    assert greedy == {"max_tokens": 128, "repetition_penalty": 1.0, "presence_penalty": 0.0, "stop_token_ids": [7],
                      "seed": 42, "skip_special_tokens": True, "temperature": 0.0}
    sampled = vllm_sampling_kwargs(compose_config("+level=4", "sampling=sample", "sampling.top_k=0").sampling, 7, 1)
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (0.7, 0.8, -1)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        vllm_sampling_kwargs({"max_new_tokens": 0}, 7, 0)
