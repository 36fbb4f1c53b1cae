"""The real Hydra config composes for every level; bad configs give one-line errors."""

import pytest

from sweep.cli import available_levels, prepare_overrides
from sweep.pipeline import resolve_stages
from tests.conftest import compose_config
from training.errors import ConfigError
from training.levels import RENDERERS, build_prompt, level_from_config, template_keeps_earlier_think


def test_five_levels_exist():
    assert available_levels() == ["1", "2", "3", "4", "5"]


@pytest.mark.parametrize("level_id", [1, 2, 3, 4, 5])
def test_every_level_composes(level_id):
    cfg = compose_config(f"+level={level_id}")
    level = level_from_config(cfg.level)
    assert level.id == level_id and level.renderer in RENDERERS
    assert level.instruction == f"Solve this using Level {level_id} ({level.name})."
    assert cfg.data.name == "svamp" and cfg.model.name == "smollm2-135m"
    assert cfg.teacher._target_.endswith("ReferenceTeacher")
    messages = build_prompt(level, "What is 2+2?", cfg.prompt.system, n_shots=2)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[-1]["content"] == f"{level.instruction}\nProblem: What is 2+2?"
    assert messages[2]["content"].startswith("<think>\n") and "\n</think>\n#### " in messages[2]["content"]


def test_exemplars_go_in_the_system_message_where_the_template_would_hide_their_reasoning():
    from transformers import AutoTokenizer

    from training.models import model_path

    level = level_from_config(compose_config("+level=4").level)
    qwen3 = AutoTokenizer.from_pretrained(model_path(compose_config("+level=4", "model=tiny-qwen3").model))
    smollm = AutoTokenizer.from_pretrained(model_path(compose_config("+level=4").model))
    # Qwen3's template renders an earlier assistant turn without its think block; SmolLM2's keeps it.
    assert not template_keeps_earlier_think(qwen3, {"enable_thinking": True})
    assert template_keeps_earlier_think(smollm)
    messages = build_prompt(level, "What is 2+2?", "Be brief.", n_shots=2, shots_in_system=True)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].startswith("Be brief.\n\nExample 1\nProblem: ")
    assert f"<think>\n{level.exemplars[1].trace}\n</think>\n#### {level.exemplars[1].answer}" in messages[0]["content"]
    rendered = qwen3.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert level.exemplars[0].trace in rendered  # the reasoning now reaches the model
    assert build_prompt(level, "q", None, n_shots=0, shots_in_system=True) == [{"role": "user", "content": messages[-1]["content"].replace("What is 2+2?", "q")}]


def test_levels_get_shorter():
    targets = [level_from_config(compose_config(f"+level={i}").level).target_chars for i in range(1, 6)]
    assert targets == sorted(targets, reverse=True)
    assert level_from_config(compose_config("+level=5").level).max_chars == 15


def test_level_overrides_are_quoted_and_checked():
    assert prepare_overrides(["+level=4", "data.n_train=5", "-m"]) == ["+level='4'", "data.n_train=5", "-m"]
    assert prepare_overrides(["+level=1,2,5"]) == ["+level='1','2','5'"]
    assert prepare_overrides(["+level=range(1,3)"]) == ["+level='1','2'"]
    assert prepare_overrides(["+level='3'"]) == ["+level='3'"]
    with pytest.raises(ConfigError, match=r"unknown level '7': valid levels are 1, 2, 3, 4, 5"):
        prepare_overrides(["+level=7"])
    with pytest.raises(ConfigError, match="unknown level 'six'"):
        prepare_overrides(["+level=1,six"])
    # Every config group gets the same one-line check; values and Hydra's own groups pass through.
    with pytest.raises(ConfigError, match="unknown model 'qwen9': valid options are qwen3-0.6b, qwen3-1.7b"):
        prepare_overrides(["model=qwen9"])
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        prepare_overrides(["model@teacher.model=nope"])
    assert prepare_overrides(["model@teacher.model=tiny-qwen3", "hydra/launcher=joblib", "data.n_train=5",
                              "experiment=null"]) == ["model@teacher.model='tiny-qwen3'", "hydra/launcher=joblib",
                                                      "data.n_train=5", "experiment=null"]


def test_missing_level_is_a_clear_error():
    cfg = compose_config()
    assert "level" not in cfg
    with pytest.raises(ConfigError, match=r"no compression level selected: add \+level=N"):
        level_from_config(cfg.get("level"))


def test_bad_level_entries():
    good = dict(compose_config("+level=4").level)
    with pytest.raises(ConfigError, match="unknown renderer 'poem'"):
        level_from_config({**good, "renderer": "poem"})
    with pytest.raises(ConfigError, match="missing instruction"):
        level_from_config({**good, "instruction": None})
    with pytest.raises(ConfigError, match="exemplar 0 needs"):
        level_from_config({**good, "exemplars": [{"question": "q", "trace": "", "answer": "1"}]})
    with pytest.raises(ConfigError, match="3 shots requested"):
        build_prompt(level_from_config(good), "q", n_shots=3)


def test_stages():
    assert resolve_stages(["filter", "traces"]) == ["traces", "filter"]
    assert resolve_stages("traces") == ["traces"]
    assert resolve_stages(["eval", "train", "traces"]) == ["traces", "train", "eval"]
    assert resolve_stages(["traces", "filter", "train", "eval"], adapter="none") == ["traces", "filter", "eval"]
    with pytest.raises(ConfigError, match="unknown stage 'trace'"):
        resolve_stages(["trace"])
    with pytest.raises(ConfigError, match="stages is empty"):
        resolve_stages([])
