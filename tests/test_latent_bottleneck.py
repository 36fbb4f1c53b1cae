"""Phase A's bottleneck rows, their 4-D mask and a Phase A run: real transformers and PEFT on the tiny Qwen3."""

import copy

import pytest
import torch

from tests.conftest import compose_config
from training.common.errors import ConfigError, TrainingError
from training.latent.bottleneck import (
    ANSWER,
    COT,
    IGNORE,
    PHASE_A_BLOCKED,
    PHASE_B_LOSS,
    PROMPT,
    BottleneckCollator,
    Z,
    allowed_attention,
    build_row,
    model_mask,
    random_z,
    turn_end_id,
)
from training.latent.phase_a import labelled_loss, train_phase_a
from training.latent.vocabulary import add_abstract_tokens, resize_for
from training.models.hardware import resolve_hardware
from training.models.loading import stop_token_id
from training.models.student import load_student

TINY = ("+level=4", "model=tiny-qwen3", "hardware=cpu", "hardware.attn_implementation=eager",
        "train.quantization=none")
PROBLEMS = [  # (question, verbal CoT, answer): three lengths, so a batch pads
    ("Tom has 3 apples and buys 4 more. How many apples does he have?", "3+4=7", "7"),
    ("A train covers 60 km in 1.5 hours. What is its speed in km/h?",
     "speed = distance / time = 60 / 1.5 = 40 km/h, so the train goes forty kilometres each hour", "40"),
    ("What is 12 times 3?", "12*3=36", "36"),
]
Z_CUT = (*PHASE_A_BLOCKED, (Z, COT))  # the answer and z both cut from the CoT: no path from the CoT to the answer


@pytest.fixture(scope="module")
def tiny():
    """The tiny Qwen3 (eager attention), its tokenizer extended with 64 symbols, and three Phase A rows."""
    cfg = compose_config(*TINY)
    hardware = resolve_hardware(cfg.hardware)
    student = load_student(cfg.model, cfg.train, hardware)
    tokenizer, model = student.tokenizer, student.model
    vocab = add_abstract_tokens(tokenizer, 64)
    resize_for(model, tokenizer)
    model.eval()
    kwargs = dict(end_of_turn=turn_end_id(tokenizer, cfg.model.chat_template_kwargs),
                  chat_template_kwargs=cfg.model.chat_template_kwargs, think_tags=(cfg.model.think.open,
                                                                                   cfg.model.think.close))
    spans = random_z([f"p{i}" for i in range(len(PROBLEMS))], 64, (16, 22), seed=0)
    rows = [build_row(tokenizer, [{"role": "user", "content": q}], cot, z, answer, vocab, **kwargs)
            for (q, cot, answer), z in zip(PROBLEMS, spans)]
    return {"cfg": cfg, "hardware": hardware, "tokenizer": tokenizer, "model": model, "vocab": vocab,
            "kwargs": kwargs, "spans": spans, "rows": rows}


@pytest.fixture(params=["eager", "sdpa"])
def attention(request, tiny):
    """Each test that takes it runs under both implementations the bottleneck supports (the project's CPU default
    is sdpa), on the shared model."""
    tiny["model"].set_attn_implementation(request.param)
    yield request.param
    tiny["model"].set_attn_implementation("eager")


def collate(tiny, rows, attention="eager", blocked=PHASE_A_BLOCKED):
    return BottleneckCollator(tiny["tokenizer"].pad_token_id, attention, blocked=blocked)(rows)


def with_other_cot(tiny, row):
    """``row`` with every token inside its think block replaced by another token: same length, other content."""
    tokenizer = tiny["tokenizer"]
    start, end = row["segments"][COT]
    assert tokenizer.decode(row["input_ids"][end - 2:end]) == "</think>\n"
    [other] = tokenizer.encode(" apple", add_special_tokens=False)
    ids = list(row["input_ids"])
    ids[start + 1:end - 2] = [other if token != other else other + 1 for token in ids[start + 1:end - 2]]
    assert ids != row["input_ids"] and len(ids) == len(row["input_ids"])
    return {**row, "input_ids": ids}


def test_a_row_is_its_segments_in_order_with_loss_on_z_and_the_answer(tiny):
    tokenizer, row, vocab = tiny["tokenizer"], tiny["rows"][0], tiny["vocab"]
    ids, segments = row["input_ids"], row["segments"]
    assert list(segments) == [PROMPT, COT, Z, ANSWER]
    assert segments[PROMPT][0] == 0 and segments[ANSWER][1] == len(ids) == len(row["labels"])
    assert all(segments[a][1] == segments[b][0] for a, b in zip(segments, list(segments)[1:]))
    text = {name: tokenizer.decode(ids[start:end]) for name, (start, end) in segments.items()}
    assert text[PROMPT] == ("<|im_start|>user\nTom has 3 apples and buys 4 more. How many apples does he have?"
                            "<|im_end|>\n<|im_start|>assistant\n")
    assert text[COT] == "<think>\n3+4=7\n</think>\n"
    assert text[Z] == vocab.span(tiny["spans"][0]) and len(tiny["spans"][0]) + 2 == segments[Z][1] - segments[Z][0]
    assert text[ANSWER] == "\n#### 7<|im_end|>"
    assert ids[-1] == stop_token_id(tokenizer, tiny["cfg"].model)  # the template's end of turn is the stop token
    # Every boundary is an added token: the segments tokenised one by one are the whole text tokenised at once.
    assert tokenizer.encode("".join(text.values()), add_special_tokens=False) == ids
    z0, end = segments[Z][0], segments[ANSWER][1]
    # Loss on z's symbols, its closing marker and the answer; none on the opening marker (decoding forces it).
    assert row["labels"] == [IGNORE] * (z0 + 1) + ids[z0 + 1:end]


def test_a_phase_b_row_has_no_cot_and_loss_on_z_and_the_answer(tiny):
    row = build_row(tiny["tokenizer"], [{"role": "user", "content": PROBLEMS[0][0]}], None, tiny["spans"][0], "7",
                    tiny["vocab"], loss_on=PHASE_B_LOSS, **tiny["kwargs"])
    assert list(row["segments"]) == [PROMPT, Z, ANSWER]
    start = row["segments"][Z][0]
    assert row["labels"] == [IGNORE] * (start + 1) + row["input_ids"][start + 1:]  # the opening marker forced
    assert row["input_ids"][start:] == tiny["rows"][0]["input_ids"][tiny["rows"][0]["segments"][Z][0]:]
    with pytest.raises(ConfigError, match="cot"):
        build_row(tiny["tokenizer"], [{"role": "user", "content": "q"}], None, [1], "1", tiny["vocab"],
                  loss_on=(COT,), **tiny["kwargs"])


def test_random_z_is_seeded_per_key_and_in_range():
    keys = [f"gsm8k-{i}" for i in range(40)]
    spans = random_z(keys, 64, (16, 22), seed=3)
    assert spans == random_z(keys, 64, (16, 22), seed=3)
    assert random_z(keys[::-1], 64, (16, 22), seed=3) == spans[::-1]  # a row's z does not depend on the order
    assert random_z(keys, 64, (16, 22), seed=4) != spans
    assert {len(span) for span in spans} <= set(range(16, 23)) and len({len(span) for span in spans}) > 3
    assert {index for span in spans for index in span} <= set(range(64))
    assert [len(span) for span in random_z(keys[:3], 8, (5, 5))] == [5, 5, 5]
    with pytest.raises(ConfigError, match="length"):
        random_z(keys, 64, (22, 16))


def test_the_mask_is_causal_hides_padding_and_cuts_the_answer_from_the_cot(tiny):
    short, long = tiny["rows"][0], tiny["rows"][1]
    length = len(long["input_ids"])
    allowed = allowed_attention([short, long], length)
    assert allowed.shape == (2, 1, length, length) and allowed.dtype == torch.bool
    for b, row in enumerate([short, long]):
        n = len(row["input_ids"])
        (a0, a1), (c0, c1), (z0, z1) = (row["segments"][name] for name in (ANSWER, COT, Z))
        expected = torch.ones(length, length, dtype=torch.bool).tril()
        expected[:, n:] = False
        expected[range(n, length), range(n, length)] = True  # a padding row reads itself alone
        expected[a0:a1, c0:c1] = False
        assert torch.equal(allowed[b, 0], expected)
        assert allowed[b, 0, z0:z1, c0:c1].all() and allowed[b, 0, a0:a1, z0:z1].all()
    float_mask = model_mask(allowed, "eager")
    assert float_mask.dtype == torch.float32 and set(float_mask.unique().tolist()) == {0.0, torch.finfo().min}
    assert torch.equal(float_mask == 0, allowed) and model_mask(allowed, "sdpa") is allowed
    with pytest.raises(ConfigError, match="flash_attention_2"):
        BottleneckCollator(0, "flash_attention_2")
    plain = BottleneckCollator(0, "flash_attention_2", blocked=())([short, long])  # Phase B: the 2-D padding mask
    assert plain["attention_mask"].tolist() == [[1] * len(short["input_ids"]) + [0] * (length - len(short["input_ids"])),
                                                [1] * length]
    assert plain["position_ids"].tolist() == [list(range(length))] * 2


def test_answer_positions_give_exactly_zero_attention_to_the_cot_in_every_layer_and_head(tiny):
    rows = tiny["rows"]
    batch = collate(tiny, rows)
    batch.pop("labels")
    with torch.no_grad():
        attentions = tiny["model"](**batch, output_attentions=True).attentions
    assert len(attentions) == tiny["model"].config.num_hidden_layers
    for weights in attentions:
        assert weights.shape[:2] == (len(rows), tiny["model"].config.num_attention_heads)
        for b, row in enumerate(rows):
            (a0, a1), (c0, c1), (z0, z1) = (row["segments"][name] for name in (ANSWER, COT, Z))
            n = len(row["input_ids"])
            assert torch.count_nonzero(weights[b, :, a0:a1, c0:c1]) == 0
            assert torch.count_nonzero(weights[b, :, :n, n:]) == 0  # nor does any real token read padding
            assert (weights[b, :, z0:z1, c0:c1] > 0).all()  # z reads the CoT: the only way it reaches the answer


def test_the_cot_reaches_the_answer_only_through_z(tiny, attention):
    """With a two-layer model the answer's loss does change with the CoT under the Phase A mask: from the second
    layer on, the answer reads z's states, which read the CoT (the channel Phase A trains). What must not change:
    the answer's first-layer states (no direct read in any head), and the loss once z is cut from the CoT too.
    Both are exactly equal, not merely close: a blocked score becomes an exact 0 in the softmax, so the
    replaced CoT adds exact zeros to the same sums, in the same shapes."""
    model, row = tiny["model"], tiny["rows"][1]
    other = with_other_cot(tiny, row)
    (a0, a1), (c0, _) = row["segments"][ANSWER], row["segments"][COT]

    def run(rows, blocked):
        batch = collate(tiny, rows, attention, blocked)
        with torch.no_grad():
            out = model(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True,
                        logits_to_keep=1)
            return labelled_loss(model, batch).item(), out.hidden_states[1]

    (loss, states), (other_loss, other_states) = run([row], PHASE_A_BLOCKED), run([other], PHASE_A_BLOCKED)
    assert torch.equal(states[0, a0:a1], other_states[0, a0:a1]) and torch.equal(states[0, :c0], other_states[0, :c0])
    assert loss != other_loss
    cut, other_cut = run([row], Z_CUT)[0], run([other], Z_CUT)[0]
    assert cut == other_cut
    (plain, plain_states), (other_plain, other_plain_states) = run([row], ()), run([other], ())
    assert plain != other_plain and not torch.equal(plain_states[0, a0:a1], other_plain_states[0, a0:a1])


def test_a_padded_batch_gives_each_row_the_loss_it_has_alone(tiny, attention):
    """Equal within float rounding: the padded row's attention sums over more (exactly zero) keys, and a kernel
    may block a longer sum differently; the tolerance is a few ulps of fp32."""
    model, rows = tiny["model"], tiny["rows"]
    batch = collate(tiny, rows, attention)
    labels = batch["labels"]
    predicting = torch.zeros_like(labels, dtype=torch.bool)
    predicting[:, :-1] = labels[:, 1:] != IGNORE
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, logits_to_keep=predicting).logits
        per_row = torch.nn.functional.cross_entropy(logits, labels[:, 1:][predicting[:, :-1]], reduction="none")
        for row, together in zip(rows, per_row.split(predicting.sum(1).tolist())):
            alone = labelled_loss(model, collate(tiny, [row], attention))
            torch.testing.assert_close(together.mean(), alone, rtol=1e-6, atol=0)


def test_the_loss_over_labelled_positions_is_the_models_own_loss(tiny):
    model, batch = tiny["model"], collate(tiny, [tiny["rows"][0], tiny["rows"][2]])
    with torch.no_grad():  # the model projects every position; labelled_loss only those that predict a label
        torch.testing.assert_close(labelled_loss(model, batch), model(**batch).loss, rtol=1e-6, atol=0)
        half = labelled_loss(model, batch, num_items_in_batch=2 * int((batch["labels"][:, 1:] != IGNORE).sum()))
        torch.testing.assert_close(2 * half, model(**batch).loss, rtol=1e-6, atol=0)


@pytest.fixture(scope="module")
def lora(tiny):
    """A copy of the extended tiny model with a plain LoRA (the shared model stays untouched)."""
    from peft import LoraConfig, get_peft_model

    def build():
        torch.manual_seed(0)
        return get_peft_model(copy.deepcopy(tiny["model"]),
                              LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))

    return build


def test_a_short_phase_a_run_trains_and_leaves_out_rows_too_long(tiny, lora, tmp_path):
    rows = tiny["rows"]
    limit = max(len(row["input_ids"]) for row in rows) - 1  # the longest row does not fit
    cfg = compose_config(*TINY, "train.batch_size=1", "train.epochs=2", "train.logging_steps=1",
                         "train.learning_rate=0.01", f"train.max_length={limit}")
    model = lora()
    summary = train_phase_a(rows, model, tiny["tokenizer"], cfg.train, tiny["hardware"], tmp_path)
    assert summary["n_rows"] == 2 and summary["n_too_long"] == 1 and summary["steps"] == 4
    assert [entry["step"] for entry in summary["loss_history"]] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in summary["loss_history"])
    assert summary["attention"] == "eager" and summary["trainable_parameters"] > 0
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: it moved, so the run trained


def test_a_nan_loss_stops_the_run(tiny, lora, tmp_path):
    cfg = compose_config(*TINY, "train.batch_size=1", "train.epochs=1", "train.logging_steps=1")
    model = lora()
    with torch.no_grad():
        next(p for name, p in model.named_parameters() if "lora_B" in name).fill_(float("nan"))
    with pytest.raises(TrainingError, match="loss became nan at step 1"):
        train_phase_a(tiny["rows"][:2], model, tiny["tokenizer"], cfg.train, tiny["hardware"], tmp_path)
