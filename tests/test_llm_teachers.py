"""LLM teachers that run in process: teacher=hf and teacher=self (length-biased rejection sampling), and their prompts.

The self-distillation test needs a student that answers correctly some of the time at two
trace lengths. A random tiny model never does, so the test builds one: a real Qwen3 whose
layers add nothing (zeroed output projections), which makes it a bigram model whose
next-token table is written into its embedding and LM head. It samples through the real
teacher, chat template and ``generate``; only its weights are chosen by hand.
"""

import json
import math
from pathlib import Path

import pytest

from sweep.pipeline import run_pipeline
from sweep.stages.traces import build_teacher
from tests.conftest import compose_config
from training.common.errors import ConfigError
from training.common.jsonl import read_jsonl
from training.data.levels import level_from_config
from training.data.problems import Problem
from training.models.loading import model_path
from training.teachers.hf import HFTeacher
from training.teachers.prompts import teacher_prompts

# The bigram table: after the prompt's last "\n" the model writes "<think>", then a one-token ("x") or a
# three-token ("y+z") trace, then "</think>", "\n\n", "####", " " and 5 (gold) or 6, then stops.
CHAIN = {
    "Ċ": {"<think>": 1.0},
    "<think>": {"x": 0.5, "y": 0.5},
    "x": {"</think>": 1.0},
    "y": {"+": 1.0},
    "+": {"z": 1.0},
    "z": {"</think>": 1.0},
    "</think>": {"ĊĊ": 1.0},
    "ĊĊ": {"####": 1.0},
    "####": {"Ġ": 1.0},
    "Ġ": {"5": 0.6, "6": 0.4},
    "5": {"<|im_end|>": 1.0},
    "6": {"<|im_end|>": 1.0},
}


@pytest.fixture(scope="module")
def bigram_student(tmp_path_factory) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tiny = Path(model_path(compose_config("+level=4", "model=tiny-qwen3").model))
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    config = Qwen3Config.from_pretrained(tiny)
    config.tie_word_embeddings = False
    model = Qwen3ForCausalLM(config)
    width = config.hidden_size
    states = {token: i for i, token in enumerate(CHAIN)}
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in {*CHAIN, *(t for row in CHAIN.values() for t in row)}}
    with torch.no_grad():
        for layer in model.model.layers:  # residual stream = the last token's embedding: a bigram model
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed.zero_()
        embed[:, width - 1] = 1.0  # every other token: a state that only stops
        head.fill_(-30.0 / math.sqrt(width))
        head[ids["<|im_end|>"], width - 1] = 0.0
        for token, state in states.items():
            embed[ids[token]] = 0.0
            embed[ids[token], state] = 1.0
            for nxt, p in CHAIN[token].items():  # RMSNorm scales a unit vector to sqrt(width)
                head[ids[nxt], state] = math.log(p) / math.sqrt(width)
    out = tmp_path_factory.mktemp("bigram-student")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_self_teacher_keeps_the_shortest_correct_trace_per_problem(bigram_student, tmp_path, run_dir):
    problems = tmp_path / "problems.jsonl"
    questions = ["What is 2 + 3?", "What is 9 - 4?", "What is 1 + 4?", "What is 3 + 4?"]
    golds = ["5", "5", "5", "7"]  # the student never writes 7: that problem gets no correct trace
    problems.write_text("".join(json.dumps({"question": q, "answer": f"It is {g}.\n#### {g}"}) + "\n"
                                for q, g in zip(questions, golds)))
    cfg = compose_config("+level=4", "teacher=self", "model=tiny-qwen3", "model.source=hub",
                         f"+model.path={bigram_student}", "data=gsm8k", "data.source=files",
                         f"data.train_path={problems}", "data.n_train=4", "data.n_eval=0", "teacher.n_samples=6",
                         "teacher.n_shots=0", "sampling.max_new_tokens=12", "stages=[traces,filter]", "hardware=cpu")
    assert cfg.filter.select == "shortest"  # teacher=self selects its filter
    summary = run_pipeline(cfg, run_dir)

    traces = read_jsonl(run_dir / "traces.jsonl")
    assert len(traces) == 4 * 6 and {t["sample"] for t in traces} == set(range(6))
    assert summary["traces"]["teacher"] == "self" and summary["traces"]["teacher_stats"]["completions"] == 24
    correct: dict[str, list[str]] = {}
    for trace in traces:
        think, _, answer = trace["completion"].partition("</think>")
        if answer.split("####")[-1].strip() == trace["gold"]:
            correct.setdefault(trace["problem_id"], []).append(think.replace("<think>", "").strip())
    # Not vacuous: some problem has correct samples of both lengths, so the choice matters.
    assert any({"x", "y+z"} <= set(thinks) for thinks in correct.values()), correct

    kept = read_jsonl(run_dir / "filtered.jsonl")
    report = json.loads((run_dir / "filter_report.json").read_text())
    assert sorted(row["id"] for row in kept) == sorted(correct)  # at most one per problem, each with a correct one
    for row in kept:
        shortest = min(correct[row["id"]], key=len)
        assert row["completion"][0]["content"].startswith(f"<think>\n{shortest}\n</think>")
    assert report["select"] == "shortest" and report["problems_without_correct_trace"] == 4 - len(correct) >= 1
    assert summary["filter"]["problems_without_correct_trace"] == report["problems_without_correct_trace"]
    assert report["dropped"]["not_shortest"] == sum(len(t) for t in correct.values()) - len(correct)


def test_generation_drops_finished_rows_and_continues_the_others(bigram_student):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.evaluation.generation import generate

    tokenizer = AutoTokenizer.from_pretrained(bigram_student)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(bigram_student)
    prompts = [[{"role": "user", "content": f"Problem {i}: what is {i} + 1?"}] for i in range(12)]
    sampling = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 16}
    timing: dict = {}
    outputs, _ = generate(model, tokenizer, prompts, sampling, batch_size=6, regroup_after=8, progress=False,
                          stop_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), seed=3, timing=timing)
    # "<think>x</think>...5" is 8 tokens with the stop token, the "y+z" trace 10: at 8 the short rows are done and
    # leave their batch; the long ones go on from their KV cache and must still follow the table to the end.
    short = {"<think>x</think>\n\n#### 5", "<think>x</think>\n\n#### 6"}
    long = {"<think>y+z</think>\n\n#### 5", "<think>y+z</think>\n\n#### 6"}
    texts = [out.text for out in outputs]
    assert set(texts) <= short | long and all(out.stopped for out in outputs)
    assert any(t in short for t in texts) and any(t in long for t in texts)
    assert timing["rows_dropped_early"] == sum(t in short for t in texts)


def test_hf_teacher_config_takes_any_model_config():
    cfg = compose_config("+level=4", "teacher=hf")
    assert cfg.teacher.model.name == "qwen3-8b" and cfg.model.name == "smollm2-135m" and cfg.filter.select == "all"
    teacher, n_samples = build_teacher(compose_config("+level=4", "teacher=hf", "model@teacher.model=tiny-qwen3").teacher)
    assert isinstance(teacher, HFTeacher) and teacher.model_cfg["name"] == "tiny-qwen3" and n_samples == 1
    level = level_from_config(cfg.level)
    with pytest.raises(ConfigError, match="identical traces"):  # N greedy samples would all be the same
        teacher.generate([Problem("p", "What is 2+3?", "2+3=5", "5")], level, n_samples=4)
    with pytest.raises(ConfigError, match="temperature must be positive"):
        build_teacher(compose_config("+level=4", "teacher=self", "teacher.sampling.temperature=0").teacher)


def test_teacher_prompt_spells_out_the_style_with_exemplars_in_the_system_message():
    cfg = compose_config("+level=4", "data=gsm8k")
    level = level_from_config(cfg.level)
    problems = [Problem("a", "Tom has 3 apples and buys 4 more. How many?", "3+4=<<3+4=7>>7\n#### 7", "7"),
                Problem("b", "Ann had 10 pens and gave away 4. How many are left?", "10-4=<<10-4=6>>6\n#### 6", "6"),
                Problem("c", "A box holds 6 eggs. How many eggs are in 5 boxes?", "6*5=<<6*5=30>>30\n#### 30", "30")]
    [prompt] = teacher_prompts(problems[:1], level, n_shots=2)
    system, user = prompt[0]["content"], prompt[-1]["content"]
    assert [m["role"] for m in prompt] == ["system", "user"]  # no earlier turns for a template to strip
    assert level.style in system and "about 45 characters" in system and "####" in system
    assert f"<think>\n{level.exemplars[0].trace}\n</think>" in system
    assert user == f"{level.instruction}\nProblem: {problems[0].question}"  # the student's own prompt
    rendered = teacher_prompts(problems, level, n_shots=2, exemplars="reference")
    for problem, prompt in zip(problems, rendered):
        shown = prompt[0]["content"]
        assert shown.count("Example ") == 2 and problem.question not in shown  # never its own solution
    assert "→" in rendered[2][0]["content"]  # the reference teacher's level-4 chain rendering
    with pytest.raises(ConfigError, match="has 2 exemplars"):
        teacher_prompts(problems, level, n_shots=3)
    with pytest.raises(ConfigError, match="unknown placeholder"):
        teacher_prompts(problems, level, system="Style {colour}")
