"""Evaluation: batched generation, the evaluation loop, the transformers and vLLM backends, the inference copy."""
