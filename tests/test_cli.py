"""``python -m sweep`` as a user runs it: files on success, one clear line on bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def sweep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": ""}
    return subprocess.run([sys.executable, "-m", "sweep", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_data_stages_write_the_run_dir(tmp_path):
    run = tmp_path / "run"
    result = sweep("+level=4", "stages=[traces,filter]", "data=gsm8k", "model=tiny-qwen3", "data.n_train=500", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (run / ".hydra" / "config.yaml").is_file() and (run / ".hydra" / "overrides.yaml").is_file()
    assert (run / "sweep.log").read_text().count("filter: kept") == 1
    report = json.loads((run / "filter_report.json").read_text())
    assert report["n_problems"] == 500 and report["keep_rate"] >= 0.7
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert sum(1 for _ in (run / "filtered.jsonl").open()) == report["kept_traces"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+level=7"], "error: unknown level '7': valid levels are 1, 2, 3, 4, 5, abstract (select one with +level=N)"),
        ([], "no compression level selected: add +level=N"),
        (["+level=4", "data=gsm8k", "data.n_train=100000"], "data.n_train=100000 exceeds the 7473 problems available in"),
        (["+level=4", "stages=[traces,deploy]"], "unknown stage 'deploy'"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    line = one_error_line(sweep(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path))
    assert message in line


def test_malformed_jsonl_names_file_and_line(tmp_path):
    bad = tmp_path / "problems.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{"question": oops}\n')
    result = sweep("+level=4", "stages=[traces,filter]", "data=gsm8k", "data.source=files", f"data.train_path={bad}",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert f"{bad}:2: malformed JSON" in one_error_line(result)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "problems.jsonl:2" in metrics["error"]


def test_model_stages_through_the_entry_point(tmp_path):
    run = tmp_path / "run"
    result = sweep("+level=4", "model=tiny-qwen3", "adapter=none", "stages=[eval]", "data.n_eval=4", "hardware=cpu",
                   "sampling.max_new_tokens=8", "wandb.mode=offline", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["adapter"] == "none" and metrics["n_eval"] == 4
    assert len((run / "eval_samples.jsonl").read_text().splitlines()) == 4
    assert "eval: L4 accuracy" in (run / "sweep.log").read_text()
    assert list((run / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("hydra.sweeper.n_trials=abc", "hydra.sweeper.n_trials=abc: Value 'abc' of type 'str' could not be converted to Integer"),
        ("hydra.sweeper.seed=1.5", "hydra.sweeper.seed=1.5: Value '1.5' of type 'float' could not be converted to Integer"),
        ("hydra.sweeper.nosuch=1", "hydra.sweeper.nosuch is not a setting of the pareto_optuna sweeper (settings: study_name,"),
    ],
)
def test_a_sweeper_setting_of_the_wrong_type_is_one_line_before_hydra_merges_it(arg, message):
    from sweep.cli import prepare_overrides
    from training.common.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        prepare_overrides(["+search=smoke", arg])
    assert str(caught.value).startswith(message)
    assert prepare_overrides(["hydra.sweeper.n_trials=3", "hydra.sweeper.storage=null"]) == \
        ["hydra.sweeper.n_trials=3", "hydra.sweeper.storage=null"]
