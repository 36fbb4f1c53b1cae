"""The tokenizer's dataset fingerprint is cheap, still tells tokenizers apart, and changes nothing else."""

import pickle

from datasets.fingerprint import Hasher
from datasets.utils._dill import Pickler

from tests.conftest import compose_config
from training.models.loading import load_tokenizer, model_path
from training.sft.fingerprint import register_cheap_fingerprint, tokenizer_identity


def test_a_tokenizer_hashes_by_its_identity_and_pickles_whole():
    cfg = compose_config("+level=4", "model=tiny-qwen3")
    tokenizer = load_tokenizer(cfg.model, model_path(cfg.model))
    # As in a process that hashed this class before any training: datasets registers its own reducer on first use.
    Pickler.dispatch.pop(type(tokenizer), None)
    exact = Hasher.hash(tokenizer)
    register_cheap_fingerprint(tokenizer)  # and this one replaces it
    assert Hasher.hash(tokenizer) != exact
    again = load_tokenizer(cfg.model, model_path(cfg.model))
    assert Hasher.hash(tokenizer) == Hasher.hash(again)  # stable: the same tokenizer, loaded twice
    assert tokenizer_identity(tokenizer).startswith(f"{type(tokenizer).__name__}:")
    again.chat_template = "{{ messages }}"
    assert Hasher.hash(again) != Hasher.hash(tokenizer)  # another template names another dataset
    # Only datasets' hashing pickler takes the shortcut: a real pickle is the tokenizer itself.
    restored = pickle.loads(pickle.dumps(tokenizer))
    assert type(restored) is type(tokenizer) and restored("2 + 2")["input_ids"] == tokenizer("2 + 2")["input_ids"]
