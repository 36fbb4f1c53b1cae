"""Think / no-think: the seeded no-think share of training rows, the model's no-think form, and its grading."""

import json
import random

import pytest
from transformers import AutoTokenizer

from training.common.errors import ConfigError, DataError
from training.config.schema import EvalSettings, TrainSettings
from training.config.settings import read_setting
from training.data.problems import Problem
from training.data.thinking import (
    NO_THINK_INSTRUCTION,
    mix_no_think,
    no_think_indices,
    no_think_messages,
    thinking_switch,
)
from training.evaluation.evaluate import grade_sample, summarize
from training.evaluation.generation import Generated
from training.models.tokens import TokenCounter, default_tokenizer_file
from training.sft.trainer import sft_records

# ChatML without any thinking switch (SmolLM2's kind of template).
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def row(problem: str, sample: int = 0, answer: str = "12") -> dict:
    return {"id": problem, "sample": sample, "answer": answer, "think_tokens": 9, "think_chars": 12,
            "prompt": [{"role": "user", "content": f"Solve {problem}."}],
            "completion": [{"role": "assistant", "content": f"<think>\na=5+7={answer}\n</think>\n#### {answer}"}]}


ROWS = [row(f"p{i:03d}") for i in range(40)]


@pytest.fixture(scope="module")
def qwen3():
    return AutoTokenizer.from_pretrained(str(default_tokenizer_file().parent))


@pytest.fixture(scope="module")
def chatml():
    tokenizer = AutoTokenizer.from_pretrained(str(default_tokenizer_file().parent))
    tokenizer.chat_template = CHATML
    return tokenizer


@pytest.mark.parametrize(("fraction", "n", "expected"), [(0.15, 40, 6), (0.15, 7, 1), (0.5, 9, 4), (0.0, 40, 0),
                                                          (0.99, 10, 10)])
def test_no_think_share_is_exact(fraction, n, expected):
    assert len(no_think_indices(ROWS[:n], fraction, seed=0)) == expected


def test_no_think_rows_are_chosen_by_the_seed_not_the_order():
    chosen = {ROWS[i]["id"] for i in no_think_indices(ROWS, 0.15, seed=3)}
    shuffled = random.Random(1).sample(ROWS, len(ROWS))
    assert {shuffled[i]["id"] for i in no_think_indices(shuffled, 0.15, seed=3)} == chosen
    assert {ROWS[i]["id"] for i in no_think_indices(ROWS, 0.15, seed=3)} == chosen  # the same again
    assert {ROWS[i]["id"] for i in no_think_indices(ROWS, 0.15, seed=4)} != chosen
    # Two samples of one problem are two rows, each drawn on its own.
    samples = [row("p1", 0), row("p1", 1)]
    assert len(no_think_indices(samples, 0.5, seed=0)) == 1


def test_qwen3_no_think_rows_use_the_templates_switch(qwen3):
    switch = thinking_switch(qwen3, {"enable_thinking": True})
    assert switch.template and switch.prefill == "<think>\n\n</think>\n\n"
    mixed = mix_no_think(ROWS, 0.15, 0, switch)
    off = [r for r in mixed if r["thinking"] == "off"]
    assert len(off) == 6 and sum(r["thinking"] == "on" for r in mixed) == 34
    for r in mixed:
        kwargs = r["chat_template_kwargs"]
        assert kwargs == {"enable_thinking": r["thinking"] == "on"}
        prompt = qwen3.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True, **kwargs)
        full = qwen3.apply_chat_template(r["prompt"] + r["completion"], tokenize=False, **kwargs)
        assert full.startswith(prompt)  # TRL's loss falls on what follows the prompt
        completion = full[len(prompt):]
        if r["thinking"] == "off":
            # The empty think block is the template's, in the prompt; the model learns the answer alone.
            assert prompt.endswith("<think>\n\n</think>\n\n") and completion == "#### 12<|im_end|>\n"
            assert r["think_tokens"] == 0 and r["prompt"] == row(r["id"])["prompt"]
        else:
            assert completion.startswith("<think>\na=5+7=12\n</think>")
    # TRL's rows keep each row's own kwargs over the model's.
    records = sft_records(mixed, {"enable_thinking": True})
    assert [r["chat_template_kwargs"]["enable_thinking"] for r in records] == [r["thinking"] == "on" for r in mixed]


def test_a_template_without_a_switch_gets_the_instruction_and_an_empty_block(chatml):
    switch = thinking_switch(chatml, {})
    assert not switch.template and switch.how == "instruction"
    mixed = mix_no_think(ROWS[:10], 0.5, 0, switch)
    off = [r for r in mixed if r["thinking"] == "off"]
    assert len(off) == 5 and all("chat_template_kwargs" not in r for r in mixed)
    for r in off:
        assert r["prompt"][-1]["content"] == f"Solve {r['id']}.\n{NO_THINK_INSTRUCTION}"
        assert r["completion"][0]["content"] == "<think>\n\n</think>\n#### 12"
    assert no_think_messages(ROWS[0]["prompt"], switch)[-1]["content"].endswith(NO_THINK_INSTRUCTION)
    assert ROWS[0]["prompt"][-1]["content"] == "Solve p000."  # the rows given are left as they were


def test_a_row_without_one_answer_line_is_refused(chatml):
    bad = {**row("p9"), "completion": [{"role": "assistant", "content": "<think>\nx\n</think>\nno answer"}]}
    with pytest.raises(DataError, match="'p9'.*exactly one '#### ' answer line"):
        mix_no_think([bad], 1 - 1e-9, 0, thinking_switch(chatml, {}))


def graded(output: str, prefill: str = "") -> dict:
    problem = Problem(id="p1", question="5+7?", solution="5+7=12", answer="12", task_type="Addition")
    return grade_sample(problem, [], Generated(output, 5, True), TokenCounter(), prefill=prefill)


def test_no_think_outputs_count_zero_think_tokens_and_are_graded_like_any_other():
    prefill = "<think>\n\n</think>\n\n"
    answer_only = graded("#### 12", prefill)  # Qwen3 with enable_thinking=False: the block was the prompt's
    assert answer_only["output"] == "#### 12" and answer_only["think_tokens"] == 0
    assert answer_only["correct"] and answer_only["format_ok"]
    own_block = graded("<think>\n\n</think>\n#### 12")  # the instruction form: the model writes the block
    assert own_block["think_tokens"] == 0 and own_block["format_ok"] and own_block["correct"]
    thinks_anyway = graded("<think>\nfive and seven\n</think>\n#### 12")  # told not to, it thought: counted
    assert thinks_anyway["think_tokens"] > 0
    second_block = graded("<think>\nx\n</think>\n#### 12", prefill)  # a block after the template's: malformed
    assert not second_block["format_ok"] and second_block["correct"]
    no_answer = graded("twelve", prefill)
    assert not no_answer["format_ok"] and not no_answer["correct"] and no_answer["think_tokens"] == 0
    summary = summarize([answer_only, own_block, no_answer])
    assert summary["mean_think_tokens"] == 0 and summary["format_error_rate"] == 0.33333


def test_thinking_settings_are_checked():
    assert read_setting(EvalSettings, "thinking", "both", "eval") == "both"
    # YAML 1.1 reads a bare on/off as a boolean: it means the same.
    assert read_setting(EvalSettings, "thinking", False, "eval") == "off"
    assert read_setting(EvalSettings, "thinking", True, "eval") == "on"
    with pytest.raises(ConfigError, match="eval.thinking"):
        read_setting(EvalSettings, "thinking", "sometimes", "eval")
    with pytest.raises(ConfigError, match="train.no_think_fraction"):
        read_setting(TrainSettings, "no_think_fraction", 1.0, "train")


def test_analysis_reads_the_no_think_twin_of_a_study_trial_and_of_its_baseline(tmp_path):
    import optuna

    from analysis.trials import load_trials
    from sweep.search.storage import open_storage
    from tests.run_dirs import write_run_dir

    sweep = tmp_path / "sweep"
    trial_dir = write_run_dir(sweep, "trial_0000", 4, 0.5, 10.0)
    write_run_dir(trial_dir, "no_think", 4, 0.3, 0.0, overrides=["+level=4", "eval.thinking=off"])
    write_run_dir(sweep / "baseline", "no_think", 1, 0.2, 0.0, adapter="none")
    write_run_dir(sweep, "baseline", 1, 0.4, 30.0, adapter="none")
    for twin in (trial_dir / "no_think", sweep / "baseline" / "no_think"):
        metrics = json.loads((twin / "metrics.json").read_text())
        (twin / "metrics.json").write_text(json.dumps({**metrics, "thinking": "off"}))
    journal = sweep / "optuna.journal"
    study = optuna.create_study(storage=open_storage(str(journal), sweep), study_name="s",
                                directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(
        params={"+level": 4}, distributions={"+level": optuna.distributions.CategoricalDistribution([4])},
        values=[0.5, 10.0], user_attrs={"run_dir": str(trial_dir), "metrics": {
            "level": 4, "accuracy": 0.5, "mean_think_tokens": 10.0, "thinking": "on"}}))
    trials = {t.name: t for t in load_trials(str(journal)).trials}
    assert {name: (t.label, t.accuracy) for name, t in trials.items()} == {
        "trial_0000": ("L4", 0.5), "trial_0000/no_think": ("L4 no-think", 0.3),
        "baseline": ("base (L1 prompt)", 0.4), "baseline/no_think": ("base (L1 prompt) no-think", 0.2)}
    # Read from the sweep dir, the same four points under the same names.
    from_dir = {t.name: t.label for t in load_trials(str(sweep)).trials}
    assert from_dir == {name: t.label for name, t in trials.items()}


def test_choose_can_recommend_a_no_think_point_and_says_so(tmp_path):
    from analysis.choose import Constraints, choose, format_choice
    from analysis.tradeoff import tradeoff
    from analysis.trials import load_trials
    from tests.run_dirs import graded, nested, write_run_dir

    on = write_run_dir(tmp_path, "L4", 4, 0.60, 12.0, n_eval=200, samples=graded(nested(0.60, 200), 12))
    off = write_run_dir(on, "no_think", 4, 0.60, 0.0, n_eval=200, samples=graded(nested(0.60, 200), 0))
    metrics = json.loads((off / "metrics.json").read_text())
    (off / "metrics.json").write_text(json.dumps({**metrics, "thinking": "off"}))
    collection = load_trials(str(tmp_path))
    choice = choose(tradeoff(collection.series, collection.trials), Constraints(margin=0.05))
    assert choice.point.trial.name == "L4/no_think"
    assert "level 4, thinking off (L4/no_think" in format_choice(choice)
