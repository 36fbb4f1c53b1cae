"""Constrained decoding of the abstract span on the tiny Qwen3 (random weights), batched, with and without regrouping.

One row's model "wants" to close early: a test-only processor, stateless like the one under test, boosts the
closing marker for the row whose prompt holds a trigger word once it has two symbols, and the stop token
three tokens after the span, so that row also finishes early and is dropped when rows are regrouped.
"""

import re

import pytest
import torch

from tests.conftest import compose_config
from training.evaluation.generation import generate
from training.latent.decoding import (
    FORCE_CLOSE,
    FORCE_OPEN,
    FREE,
    IN_SPAN,
    span_decoding,
    span_phases,
    span_processors,
    split_span,
    stage_two_prompt,
    vllm_answer_kwargs,
    vllm_span_kwargs,
)
from training.latent.vocabulary import add_abstract_tokens, resize_for
from training.models.hardware import resolve_hardware
from training.models.loading import stop_token_id
from training.models.student import load_student

CAP = 5
QUESTIONS = ["What is 2 + 3?", "Tom has 7 apples and eats 2. How many are left?", "How many purple balls: 4 + 4?",
             "A train travels 60 km in 1 hour and then 90 km in 2 hours. What is its average speed in km per hour?",
             "7 * 6?"]
TRIGGER = " purple"  # one token, in the early-closing row's prompt alone


@pytest.fixture(scope="module")
def setup():
    cfg = compose_config("+level=4", "model=tiny-qwen3", "hardware=cpu", "train.quantization=none",
                         "sampling.max_new_tokens=14")
    student = load_student(cfg.model, cfg.train, resolve_hardware(cfg.hardware))
    vocab = add_abstract_tokens(student.tokenizer, 64)
    resize_for(student.model, student.tokenizer)
    student.model.eval()
    stop = stop_token_id(student.tokenizer, cfg.model)
    (trigger,) = student.tokenizer.encode(TRIGGER, add_special_tokens=False)
    return cfg, student.model, student.tokenizer, vocab, stop, trigger


def early_closer(width: int, trigger: int, vocab, stop_id: int, symbols: int = 2, answer: int = 3):
    from transformers import LogitsProcessor

    symbol_ids = set(vocab.symbol_ids)

    class EarlyCloser(LogitsProcessor):
        def __call__(self, input_ids, scores):
            scores = scores.clone()
            for row, ids in enumerate(input_ids.tolist()):
                new = ids[width:]
                if trigger not in ids[:width]:
                    continue
                if vocab.close_id not in new:
                    if sum(token in symbol_ids for token in new) >= symbols:
                        scores[row, vocab.close_id] = 1e4
                elif len(new) - new.index(vocab.close_id) - 1 >= answer:
                    scores[row, stop_id] = 1e4
            return scores

    return EarlyCloser()


def messages(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def test_phases_are_read_from_the_tokens():
    o, c, z, p = 90, 91, 50, 7  # open, close, a symbol, a prompt token; width 2
    ids = torch.tensor([[p, o, z, z], [p, o, z, c], [p, p, o, z], [p, o, z, z]])
    assert span_phases(ids, 2, o, c, 2).tolist() == [FORCE_CLOSE, FREE, IN_SPAN, FORCE_CLOSE]
    assert span_phases(ids, 2, o, c, 3).tolist() == [IN_SPAN, FREE, IN_SPAN, IN_SPAN]
    assert span_phases(torch.tensor([[p, p], [p, o]]), 2, o, c, 3).tolist() == [FORCE_OPEN, IN_SPAN]


def test_span_holds_only_reserved_symbols_up_to_the_cap_then_the_answer_is_free(setup):
    """Prompts ending with the opening marker (the card's prefix), left-padded as evaluation pads them."""
    cfg, model, tokenizer, vocab, stop, trigger = setup
    rows = [tokenizer.apply_chat_template(messages(q), add_generation_prompt=True, tokenize=True,
                                          return_dict=True, enable_thinking=True)["input_ids"] + [vocab.open_id]
            for q in QUESTIONS]
    assert len({len(r) for r in rows}) == len(rows)
    batch = tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt")
    width = batch["input_ids"].shape[1]
    processors = [early_closer(width, trigger, vocab, stop), *span_processors(vocab, CAP)(width)]
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=14, do_sample=False, logits_processor=processors,
                             eos_token_id=stop, pad_token_id=tokenizer.pad_token_id)
    symbols, allowed = set(vocab.symbol_ids), set(vocab.allowed_in_span)
    free_tokens = []
    for question, new in zip(QUESTIONS, out[:, width:].tolist()):
        span, answer = split_span(new, vocab)
        answer = answer[: answer.index(stop) + 1] if stop in answer else answer  # then padding
        assert span[-1] == vocab.close_id and set(span[:-1]) <= symbols and len(span) - 1 <= CAP, (question, new)
        if TRIGGER.strip() in question:
            assert len(span) == 3 and len(answer) == 4 and answer[-1] == stop  # closed early, then stopped
            assert not set(answer[:3]) <= allowed, answer  # decoded outside the span's set
        free_tokens += answer
    assert any(len(split_span(new, vocab)[0]) == CAP + 1 for new in out[:, width:].tolist())  # the cap forced
    assert not set(free_tokens) <= allowed


def test_chat_prompts_open_the_span_and_regrouping_gives_the_same_tokens(setup):
    """Chat prompts as ``generate`` builds them: the marker is generated first; the processors see new calls on
    the sequences so far, and fewer rows once the early row has stopped (two batches of different widths)."""
    cfg, model, tokenizer, vocab, stop, trigger = setup
    runs = {}
    for regroup in (0, 2):
        timing = {}
        constrained = span_processors(vocab, CAP)
        outputs, _ = generate(model, tokenizer, [messages(q) for q in QUESTIONS], cfg.sampling,
                              batch_size=3, stop_token_id=stop, progress=False, regroup_after=regroup,
                              chat_template_kwargs=cfg.model.chat_template_kwargs, timing=timing,
                              logits_processors=lambda width: [early_closer(width, trigger, vocab, stop),
                                                               *constrained(width)])
        runs[regroup] = ([(g.text, g.completion_tokens, g.stopped) for g in outputs], timing["rows_dropped_early"])
    assert runs[0][0] == runs[2][0]
    assert (runs[0][1], runs[2][1]) == (0, 1)  # the early row was dropped from its batch at 8 tokens
    span = re.compile(r"<latent>((?:<z\d\d>)*)</latent>")
    for question, (text, tokens, stopped) in zip(QUESTIONS, runs[0][0]):
        found = span.match(text)
        assert found, text
        n = len(found.group(1)) // len("<z00>")
        if TRIGGER.strip() in question:
            assert (n, tokens, stopped) == (2, 1 + 2 + 1 + 4, True)  # open, 2 symbols, close, 3 tokens + stop
        else:
            assert n <= CAP and (tokens, stopped) == (14, False)


def test_vllm_two_stage_arguments(setup):
    _, _, _, vocab, _, _ = setup
    base = {"max_tokens": 100, "temperature": 0.0, "stop_token_ids": [7], "seed": 3, "skip_special_tokens": True}
    assert vllm_span_kwargs(vocab, 16, base) == {
        "max_tokens": 16, "temperature": 0.0, "seed": 3, "skip_special_tokens": False,
        "stop_token_ids": [vocab.close_id], "allowed_token_ids": [*vocab.symbol_ids, vocab.close_id]}
    assert vllm_answer_kwargs(base, 18) == {**base, "max_tokens": 82}
    z = vocab.symbol_ids
    assert stage_two_prompt([1, 2], [z[0], z[1]], vocab) == [1, 2, z[0], z[1], vocab.close_id]  # cut at the cap
    assert stage_two_prompt([1, 2], [z[0], vocab.close_id], vocab) == [1, 2, z[0], vocab.close_id]


def test_span_decoding_samples_the_span_and_keeps_a_greedy_answer_greedy():
    """The card's decode: the span sampled at its temperature, the answer greedy. With a greedy trial generation
    samples at temperature 1, so the span's scores are divided by the span temperature and the answer's reduced to
    their best token; with a sampled trial (T = 0.5) the span's are scaled so that T's division leaves 1 / 0.7."""
    from training.latent.vocabulary import AbstractVocab

    vocab = AbstractVocab(symbols=("<z00>", "<z01>"), symbol_ids=(3, 4), open_id=5, close_id=6)
    greedy = {"do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 9}
    sampling, processors = span_decoding(vocab, 4, 0.7, greedy)
    assert (sampling["do_sample"], sampling["temperature"], sampling["top_p"], sampling["top_k"]) == (True, 1.0, 1.0, 0)
    # Row 0 is inside the span (prompt ends with the marker), row 1 has closed it: the answer is free.
    ids = torch.tensor([[1, 5], [5, 6]])
    scores = torch.tensor([[0.0, 1.0, 2.0, 1.4, 0.7, 9.0, 0.35], [0.0, 3.0, 1.0, 2.0, 0.0, 0.0, 0.0]])
    out = processors(1)[0](ids, scores.clone())
    assert torch.allclose(out[0, [3, 4, 6]], torch.tensor([2.0, 1.0, 0.5])) and torch.isinf(out[0, :3]).all()
    assert out[1, 1] == 3.0 and torch.isinf(out[1, [0, 2, 3, 4, 5, 6]]).all()  # only the best answer token left
    sampled, processors = span_decoding(vocab, 4, 0.7, {**greedy, "do_sample": True, "temperature": 0.5})
    assert sampled["temperature"] == 0.5
    out = processors(1)[0](ids, scores.clone())
    assert torch.allclose(out[0, [3, 4, 6]], scores[0, [3, 4, 6]] * 0.5 / 0.7) and torch.equal(out[1], scores[1])
    # Span temperature 0: the trial's decoding throughout, as before.
    same, processors = span_decoding(vocab, 4, 0.0, greedy)
    assert same == greedy and torch.equal(processors(1)[0](ids, scores.clone())[1], scores[1])
    assert vllm_span_kwargs(vocab, 4, {"temperature": 0.0, "max_tokens": 9}, 0.7)["temperature"] == 0.7
