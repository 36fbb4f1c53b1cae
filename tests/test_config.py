"""The real Hydra config composes for every level; bad configs give one-line errors."""

import pytest

from sweep.cli import available_levels, prepare_overrides
from sweep.stages import resolve_stages
from tests.conftest import compose_config
from training.common.errors import ConfigError
from training.data.levels import RENDERERS, build_prompt, level_from_config, template_keeps_earlier_think


def test_five_verbal_levels_and_the_latent_one_exist():
    assert available_levels() == ["1", "2", "3", "4", "5", "abstract"]


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

    from training.models.loading import model_path

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
    with pytest.raises(ConfigError, match=r"unknown level '7': valid levels are 1, 2, 3, 4, 5, abstract"):
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


@pytest.mark.parametrize(
    ("override", "message"),
    [("data.n_train=abc", "data.n_train must be null or an integer >= 0, got 'abc'"),
     ("data.seed=abc", "data.seed must be an integer >= 0, got 'abc'"),
     ("seed=-1", "seed must be an integer >= 0, got -1"),
     ("train.lora_r=0", "train.lora_r must be an integer >= 1, got 0"),
     ("train.lora_alpha=0", "train.lora_alpha must be a number > 0, got 0"),
     ("train.lora_dropout=1", "train.lora_dropout must be a number in [0, 1), got 1"),
     ("train.epochs=0", "train.epochs must be a number > 0, got 0"),
     ("train.learning_rate=-1e-3", "train.learning_rate must be a number > 0, got -0.001"),
     ("train.batch_size=0", "train.batch_size must be an integer >= 1, got 0"),
     ("train.grad_accum=two", "train.grad_accum must be an integer >= 1, got 'two'"),
     ("train.max_length=1.5", "train.max_length must be an integer >= 1, got 1.5"),
     ("train.warmup=-1", "train.warmup must be a number >= 0 (steps, or a fraction of all steps below 1), got -1"),
     ("train.lr_scheduler=cosine_annealing", "train.lr_scheduler='cosine_annealing' is not one of linear, cosine,"),
     ("train.quantization=int3", "train.quantization='int3' is not one of nf4, none"),
     ("train.group_by_length=maybe", "train.group_by_length must be true or false, got 'maybe'"),
     ("train.target_modules=[q_proj,7]", "train.target_modules must be all-linear or a list of module names, got ["),
     ("filter.max_think_tokens=-3", "filter.max_think_tokens must be null or an integer >= 1, got -3"),
     ("filter.select=longest", "filter.select='longest' is not one of all, shortest"),
     ("eval.extractor=bogus", "eval.extractor='bogus' is not one of strict, flexible"),
     ("eval.batch_size=0", "eval.batch_size must be an integer >= 1, got 0"),
     ("eval.backend=tgi", "eval.backend='tgi' is not one of auto, transformers, vllm"),
     ("eval.n_shots=3", "3 shots requested but level 4 has 2 exemplars"),
     ("sampling.max_new_tokens=0", "sampling.max_new_tokens must be at least 1, got 0"),
     ("sampling.presence_penalty=x", "sampling.presence_penalty must be a number, got 'x'"),
     ("hardware.precision=fp8", "hardware.precision='fp8' is not one of auto, fp32, fp16, bf16"),
     ("hardware.num_processes=0", "hardware.num_processes must be at least 1, got 0")],
)
def test_check_config_names_the_key_the_value_and_what_is_allowed(override, message):
    from sweep.config_check import check_config

    with pytest.raises(ConfigError) as caught:
        check_config(compose_config("+level=4", override))
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("choices", "stages"), [
    (["+level=4"], None), (["+level=2", "data=asdiv-svamp", "teacher=self", "filter=shortest"], None),
    (["+level=5", "experiment=qwen3-4b-study-a100", "sampling=sample"], None),
    (["+level=1", "adapter=none", "eval.n_shots=2"], ["eval"]),
    (["+level=4", "train.lora_r=0", "eval.extractor=bogus"], ["traces", "filter"]),  # settings those stages never read
    (["+level=4", "data.n_train=abc", "filter.select=longest"], ["train"]),
])
def test_check_config_passes_the_shipped_configs_and_skips_unread_groups(choices, stages):
    from sweep.config_check import check_config

    check_config(compose_config(*choices), stages)


def test_the_scheduler_list_is_transformers_own():
    from transformers.trainer_utils import SchedulerType

    from training.sft.trainer import LR_SCHEDULERS

    assert set(LR_SCHEDULERS) == {kind.value for kind in SchedulerType}


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{not json", ":1: malformed JSON (Expecting property name enclosed in double quotes at column 2)"),
     (b"\x89PNG\r\n\x1a\n\x00", ": not UTF-8 text; is this an adapter folder?"),
     (b"[16]", ": expected a JSON object, got list"),
     (b'{"peft_type": "LORA", "r": "16"}', ': "r" must be an integer >= 1, got \'16\''),
     (b'{"peft_type": "LORA", "r": 8, "lora_alpha": null}', ': "lora_alpha" must be a number > 0, got None'),
     (b'{"peft_type": "PREFIX_TUNING", "r": 8}', ': peft_type must be "LORA", got \'PREFIX_TUNING\''),
     (b'{"peft_type": "LORA", "r": 8, "target_modules": 7}', ': "target_modules" must be a string or a list')],
)
def test_an_adapter_config_is_checked_before_any_model_loads(tmp_path, content, message):
    from sweep.config_check import check_config
    from training.common.errors import DataError

    (tmp_path / "adapter_config.json").write_bytes(content)
    with pytest.raises(DataError) as caught:
        check_config(compose_config("+level=4", f"adapter={tmp_path}"), ["eval"])
    assert str(caught.value).startswith(f"{tmp_path / 'adapter_config.json'}{message}"), str(caught.value)
    with pytest.raises(ConfigError, match="adapter_config.json missing"):
        check_config(compose_config("+level=4", f"adapter={tmp_path / 'nowhere'}"), ["eval"])


def test_an_adapter_folder_without_weights_is_named_before_any_model_loads(tmp_path):
    from sweep.config_check import check_config
    from training.common.errors import DataError

    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"]}')
    with pytest.raises(DataError) as caught:
        check_config(compose_config("+level=4", f"adapter={tmp_path}"), ["eval"])
    assert str(caught.value) == f"{tmp_path}: no adapter weights (adapter_model.safetensors or adapter_model.bin missing)"
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    check_config(compose_config("+level=4", f"adapter={tmp_path}"), ["eval"])
