"""Supervised fine-tuning: the TRL trainer, train-and-save, torchrun data parallelism, the model card."""
