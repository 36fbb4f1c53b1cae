"""The latent level's adapter on the tiny Qwen3: LoRA plus the reserved rows, trained, saved and loaded back.

The student is loaded as trials load it (NF4, and plain), its tokenizer extended and its embedding resized;
a few AdamW steps on one row that uses reserved tokens move the reserved rows and no other. The adapter folder
(weights and tokenizer) then loads onto a fresh base through ``attach_adapter`` and computes the same logits.
tiny-qwen3 ties its LM head to the embedding; an untied copy checks that the head's rows train too.
"""

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import compose_config
from training.latent.adapter import latent_lora_config, save_latent_adapter, token_rows
from training.latent.vocabulary import add_abstract_tokens, resize_for
from training.models.hardware import resolve_hardware
from training.models.loading import load_tokenizer, model_path
from training.models.student import Student, adapter_vocab_size, attach_adapter, load_student
from training.sft.trainer import _lora_settings

M = 64
HIDDEN = 64  # tiny-qwen3's hidden size
SPAN = [3, 41, 3, 7]  # symbol indices of the training row's span


def config(quantization: str):
    return compose_config("+level=4", "model=tiny-qwen3", "hardware=cpu", f"train.quantization={quantization}")


def train_rows(student: Student, steps: int = 2):
    """Extend, resize, wrap and train ``student`` in place; the PEFT model, the vocab, the row and the rows before."""
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    cfg = config(student.quantization)
    vocab = add_abstract_tokens(student.tokenizer, M)
    resize_for(student.model, student.tokenizer)
    model = student.model
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    set_seed(0)
    model = get_peft_model(model, latent_lora_config(_lora_settings(cfg.train), vocab, model))
    before = token_rows(model)
    # A short row (the cost is the 151k-row head): a question, the span, the answer.
    row = torch.tensor([student.tokenizer.encode("3 + 4?" + vocab.span(SPAN) + "#### 7<|im_end|>",
                                                 add_special_tokens=False)])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(input_ids=row, labels=row).loss.backward()
        optimizer.step()
    model.eval()
    return model, vocab, row, before


def changed_rows(before: torch.Tensor, after: torch.Tensor) -> set[int]:
    return set((before != after).any(1).nonzero().flatten().tolist())


def logits(model, row):
    with torch.inference_mode():
        return model(input_ids=row).logits


@pytest.fixture(scope="module", params=["nf4", "none"])
def trained(request, tmp_path_factory):
    cfg = config(request.param)
    student = load_student(cfg.model, cfg.train, resolve_hardware(cfg.hardware))
    assert student.quantization == request.param
    model, vocab, row, before = train_rows(student)
    folder = tmp_path_factory.mktemp("latent-adapter")
    save_latent_adapter(model, student.tokenizer, folder)
    return cfg, student, model, vocab, row, before, folder


def test_only_the_reserved_rows_train(trained):
    _, student, model, vocab, _, before, _ = trained
    after = token_rows(model)
    assert list(after) == ["model.embed_tokens"]  # the tied head is this matrix, with the same delta
    assert after["model.embed_tokens"].shape == (len(student.tokenizer), HIDDEN) == (151669 + M + 2, HIDDEN)
    # All reserved rows move (the tied head's softmax reaches every one); every other row is bit-identical.
    assert changed_rows(before["model.embed_tokens"], after["model.embed_tokens"]) == set(vocab.ids)
    lora = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
    assert model.get_nb_trainable_parameters()[0] == lora + (M + 2) * HIDDEN


def test_adapter_folder_holds_lora_the_rows_and_the_tokenizer_only(trained):
    _, student, _, _, _, _, folder = trained
    weights = load_file(folder / "adapter_model.safetensors")
    others = {key: tuple(value.shape) for key, value in weights.items() if "lora_" not in key}
    assert others == {"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta": (M + 2, HIDDEN)}
    assert (folder / "adapter_model.safetensors").stat().st_size < 200_000  # not the 78 MB of the whole matrix
    assert adapter_vocab_size(folder) == len(student.tokenizer) == 151669 + M + 2  # read without loading it


def test_adapter_reloads_onto_a_fresh_base_with_its_tokenizer(trained):
    cfg, student, model, vocab, row, _, folder = trained
    fresh = load_student(cfg.model, cfg.train, resolve_hardware(cfg.hardware))
    assert len(fresh.tokenizer) == 151669
    attach_adapter(fresh, folder)
    assert len(fresh.tokenizer) == len(student.tokenizer) and fresh.tokenizer.padding_side == "left"
    assert fresh.tokenizer.encode(vocab.span(SPAN), add_special_tokens=False) == \
        [vocab.open_id, *(vocab.symbol_ids[i] for i in SPAN), vocab.close_id]
    assert torch.equal(token_rows(fresh.model)["model.embed_tokens"], token_rows(model)["model.embed_tokens"])
    assert torch.equal(logits(fresh.model, row), logits(model, row))


def test_untied_head_trains_its_own_reserved_rows(tmp_path: Path):
    """As Qwen3-4B: the head is a matrix of its own, so its reserved rows need a delta of their own."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    cfg = config("none")
    model_config = Qwen3Config.from_pretrained(model_path(cfg.model))
    model_config.tie_word_embeddings = False

    tokenizer = load_tokenizer(cfg.model)

    def student(tokenizer) -> Student:  # the same random base each time: seeded, its own config (resizing edits it)
        torch.manual_seed(0)
        return Student(AutoModelForCausalLM.from_config(copy.deepcopy(model_config)), tokenizer, "untied", "none")

    trainee = student(copy.deepcopy(tokenizer))  # extended in place by train_rows
    model, vocab, row, before = train_rows(trainee)
    after = token_rows(model)
    assert list(after) == ["model.embed_tokens", "lm_head"]
    used = {vocab.open_id, vocab.close_id, *(vocab.symbol_ids[i] for i in SPAN)}
    assert changed_rows(before["model.embed_tokens"], after["model.embed_tokens"]) == used  # rows the input reads
    assert changed_rows(before["lm_head"], after["lm_head"]) == set(vocab.ids)  # every reserved logit
    save_latent_adapter(model, trainee.tokenizer, tmp_path / "adapter")
    fresh = student(tokenizer)
    attach_adapter(fresh, tmp_path / "adapter")
    assert torch.equal(logits(fresh.model, row), logits(model, row))
