"""Every config group a user edits has a typed schema, read before any data is loaded or model touched.

One test per group: the real config composed with one bad override, and ``check_config`` (the sweeper's
``check_settings``) refusing it in one line that names the key, the value and what is allowed, while
loading data or a model would fail the test. No subprocess, no model: each case takes milliseconds.
"""

from __future__ import annotations

import ast
import sys

import pytest

from sweep.cli import CONF_DIR, prepare_overrides
from sweep.config_check import check_config
from tests.conftest import compose_config
from training.common.errors import ConfigError
from training.config.schema import GROUPS, TEACHERS, read_group


@pytest.fixture(autouse=True)
def nothing_loads(monkeypatch):
    """Reading data, a tokenizer or a model while checking the config fails the test."""
    import training.data.problems
    import training.models.loading

    def refuse(*args, **kwargs):
        raise AssertionError("the config check loaded data or a model")

    for module, name in [(training.data.problems, "load_pool"), (training.models.loading, "load_model"),
                         (training.models.loading, "load_tokenizer"), (training.models.loading, "model_path")]:
        monkeypatch.setattr(module, name, refuse)


def refused(*overrides: str, stages: list[str] | None = None) -> str:
    """The one-line error check_config raises for the real config with ``overrides``."""
    with pytest.raises(ConfigError) as caught:
        check_config(compose_config("+level=4", *overrides), stages)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_train():
    assert refused("train.double_quant=yes") == "train.double_quant must be true or false, got 'yes'"
    assert refused("train.weight_decay=-0.1") == "train.weight_decay must be a number >= 0, got -0.1"
    assert check_config(compose_config("+level=4", "train.target_modules=[]"))["train"].target_modules == "all-linear"
    # An eval-only run loads the student with train's quantization settings, and reads nothing else of train.
    assert refused("train.quantization=int3", stages=["eval"]) == "train.quantization='int3' is not one of nf4, none"
    check_config(compose_config("+level=4", "train.lora_r=0"), ["eval"])


def test_eval():
    assert refused("eval.regroup_after=-1") == ("eval.regroup_after must be an integer >= 0 (0: one pass per batch), "
                                               "got -1")
    assert refused("eval.vllm_engine_args=7") == ("eval.vllm_engine_args must be a mapping of vllm.LLM arguments or "
                                                 "null, got 7")


def test_sampling():
    assert refused("sampling=sample", "sampling.top_p=0") == "sampling.top_p must be a number in (0, 1], got 0"
    # temperature, top_p and top_k are read only when sampling: greedy ignores them.
    assert check_config(compose_config("+level=4", "sampling.top_p=0"))["sampling"].top_p is None


def test_data():
    assert refused("data.n_eval=-1") == "data.n_eval must be null or an integer >= 0, got -1"
    assert refused("data=asdiv-svamp", "data.eval_from.source=ftp") == \
        "data.eval_from.source='ftp' is not one of package, hub, files"


def test_filter():
    assert refused("filter.allow_empty_think=1") == "filter.allow_empty_think must be true or false, got 1"


def test_model():
    assert refused("model.source=http") == "model.source='http' is not one of hub, gguf, tiny"
    assert refused("model.source=hub") == "model.path must be set for model.source=hub, got None"
    assert refused("model.think.open=''") == "model.think.open must be a non-empty string, got ''"


def test_hardware():
    assert refused("hardware.device=tpu") == "hardware.device='tpu' is not one of auto, cpu, cuda"
    assert refused("hardware.num_threads=0") == "hardware.num_threads must be null or at least 1, got 0"


@pytest.mark.parametrize(("overrides", "message"), [
    (["teacher.n_samples=0"], "teacher.n_samples must be an integer >= 1, got 0"),
    (["teacher=openai"], "teacher.model is not set: add teacher.model=NAME (the model the server serves)"),
    (["teacher=openai", "teacher.model=m", "teacher.base_url=localhost:8000"],
     "teacher.base_url must be an http:// or https:// URL, got 'localhost:8000'"),
    (["teacher=openai", "teacher.model=m", "teacher.concurrency=0"], "teacher.concurrency must be an integer >= 1, "
                                                                     "got 0"),
    (["teacher=hf", "teacher.batch_size=0"], "teacher.batch_size must be at least 1, got 0"),
    (["teacher=self", "teacher.exemplars=mine"], "teacher.exemplars='mine' is not one of level, reference"),
    (["teacher=self", "teacher.sampling.temperature=0"],
     "teacher.sampling.temperature must be positive when sampling, got 0"),
])
def test_teacher(overrides, message):
    assert refused(*overrides, stages=["traces"]) == message


def test_unread_groups_and_unknown_keys_pass():
    # A group is read only when a stage that uses it runs: eval reads no teacher and only train's quantization,
    # traces no model.
    settings = check_config(compose_config("+level=4", "teacher.n_samples=0", "train.lora_r=0"), ["eval"])
    assert set(settings) == {"data", "model", "hardware", "train", "eval", "sampling"}
    assert set(check_config(compose_config("+level=4", "model.source=http"), ["traces"])) == {"data", "teacher"}
    # A key no schema declares is the user's own (+group.key=...).
    check_config(compose_config("+level=4", "+train.my_note=x", "+eval.extra=1", "+teacher.extra=2"))


def test_every_shipped_option_of_every_group_reads():
    for group in [*GROUPS, "teacher"]:
        for option in sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml")):
            cfg = compose_config("+level=4", f"{group}={option}", *(["teacher.model=m"] if option == "openai" else []))
            settings = read_group(group, cfg[group])
            expected = TEACHERS[cfg.teacher._target_] if group == "teacher" else GROUPS[group]
            assert type(settings) is expected, (group, option)


def test_the_schemas_import_nothing_heavy():
    """Read off the module-level imports of training.config.schema and the project modules it pulls in."""
    root, seen, external = CONF_DIR.parent, set(), set()
    todo = ["training.config.schema"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = root / (name.replace(".", "/") + ".py")
        if not path.is_file():
            path = root / name.replace(".", "/") / "__init__.py"
        for node in ast.parse(path.read_text()).body:
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for module in names:
                (todo.append(module) if module.split(".")[0] == "training" else external.add(module.split(".")[0]))
    assert not external & {"torch", "transformers", "peft", "trl", "tokenizers", "omegaconf", "hydra", "optuna"}
    assert external <= set(sys.stdlib_module_names), external


def sweeper_settings(*overrides: str) -> dict:
    """The sweeper's settings as Hydra hands them to it: the real search config, composed with ``overrides``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=prepare_overrides(["+search=smoke", *overrides]),
                      return_hydra_config=True)
    settings = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    return {key: value for key, value in settings.items() if key not in ("_target_", "params")}


@pytest.mark.parametrize(("override", "message"), [
    ("hydra.sweeper.n_workers=0", "hydra.sweeper.n_workers=0 must be a whole number of at least 1"),
    ("hydra.sweeper.n_jobs=-2", "hydra.sweeper.n_jobs=-2 must be at least 1, -1 (one per core) or null"),
    ("hydra.sweeper.study_name=' '", "hydra.sweeper.study_name is empty"),
    ("hydra.sweeper.objectives.accuracy=up",
     "hydra.sweeper.objectives.accuracy='up' is not one of maximize, minimize"),
])
def test_sweeper(override, message):
    from sweep.search.sweeper_settings import check_settings

    # By name: Hydra's plugin scan may import the config module a second time, a second class object.
    settings = check_settings(sweeper_settings())
    assert type(settings).__name__ == "ParetoSweeperConf" and settings.sampler == "random" and settings.n_trials == 4
    with pytest.raises(ConfigError) as caught:
        check_settings(sweeper_settings(override))
    assert str(caught.value) == message
