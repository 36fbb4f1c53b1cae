"""Bad input files on a trial's path: one line naming the file (and line), exit status 2, metrics.json "failed".

One real ``python -m sweep`` per class of input (traces, data, adapter); the many variants of each
(every missing field, every mistyped value) are pure-function tests in tests/test_filtering.py,
tests/test_data.py and tests/test_config.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.faults.common import one_error_line, run_module

GOOD_TRACE = {"problem_id": "p1", "sample": 0, "completion": "<think>\n1+1=2\n</think>\n#### 2", "gold": "2",
              "question": "What is 1+1?", "teacher": "reference", "error": None}


def sweep(tmp_path: Path, *args: str):
    return run_module("sweep", "+level=4", "model=tiny-qwen3", "hardware=cpu", "wandb.mode=disabled",
                      f"hydra.run.dir={tmp_path / 'run'}", *args, cwd=tmp_path)


def assert_failed_with(tmp_path: Path, result, message: str, cache: Path) -> None:
    """Exactly ``message`` as the one line, the same error in metrics.json, and nothing cached."""
    line = one_error_line(result)
    assert re.fullmatch(r"\[[^\]]+\]\[sweep\]\[ERROR\] - " + re.escape(message), line), line
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error"].endswith(message)
    assert not list(cache.rglob("summary.json")), "a cache entry was stored from a failed stage"


@pytest.mark.parametrize("fault", ["binary", "missing_gold"])
def test_a_bad_traces_file_is_one_line_naming_file_and_line(tmp_path, fresh_stage_cache, fault):
    traces = tmp_path / "traces.jsonl"
    first = json.dumps(GOOD_TRACE).encode() + b"\n"
    if fault == "binary":
        traces.write_bytes(first + b"\x00\x89PNG\r\n\x1a\n\xff\xfe")
        message = f"{traces}:2: not UTF-8 text (byte 0x89 at column 2); is this a JSONL file?"
    else:
        traces.write_bytes(first + json.dumps({k: v for k, v in GOOD_TRACE.items() if k != "gold"}).encode() + b"\n")
        message = f"{traces}:2: traces row has no 'gold' (each row needs problem_id, question, gold and completion)"
    result = sweep(tmp_path, "stages=[filter]", f"+filter.traces_path={traces}")
    assert_failed_with(tmp_path, result, message, fresh_stage_cache)
    assert not (tmp_path / "run" / "filtered.jsonl").exists()  # no SFT set from half a file


def test_a_parquet_file_that_is_not_parquet_is_one_line(tmp_path, fresh_stage_cache):
    fake = tmp_path / "problems.parquet"
    fake.write_text('{"question": "What is 1+1?", "answer": "#### 2"}\n')
    result = sweep(tmp_path, "stages=[traces,filter]", "data=gsm8k", "data.source=files", f"data.train_path={fake}",
                   "data.n_train=1", "data.n_eval=0")
    message = (f"{fake}: not a readable Parquet file (Parquet magic bytes not found in footer. Either the file is "
               "corrupted or this is not a parquet file.)")
    assert_failed_with(tmp_path, result, message, fresh_stage_cache)
    assert not (tmp_path / "run" / "traces.jsonl").exists()


def test_a_garbage_adapter_config_fails_before_the_model_loads(tmp_path, fresh_stage_cache):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "r": "sixteen"')
    result = sweep(tmp_path, "stages=[eval]", f"adapter={adapter}", "data.n_eval=2")
    message = f"{adapter / 'adapter_config.json'}:1: malformed JSON (Expecting ',' delimiter at column 37)"
    assert_failed_with(tmp_path, result, message, fresh_stage_cache)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "hardware" not in metrics and not (tmp_path / "run" / "eval_samples.jsonl").exists()


def test_a_calculator_mark_of_thousands_of_terms_is_one_line_naming_file_and_line(tmp_path, fresh_stage_cache):
    """A mark no evaluator could hold (it overflowed Python's recursion limit) is a malformed data row."""
    mark = "+".join(["1"] * 3000)
    rows = [{"question": "What is 1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"},
            {"question": "Count them.", "answer": f"There are <<{mark}=3000>>3000 apples.\n#### 3000"}]
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = sweep(tmp_path, "stages=[traces,filter]", "data=gsm8k", "data.source=files", f"data.train_path={data}",
                   "data.n_train=2", "data.n_eval=0")
    message = f"{data}:2: calculator mark '{mark[:60]}'... (5999 chars): too long: 2999 operators (at most 200)"
    assert_failed_with(tmp_path, result, message, fresh_stage_cache)
    assert not (tmp_path / "run" / "traces.jsonl").exists()


def test_adapter_weights_peft_cannot_read_are_one_line(tmp_path):
    """In-process (the student has to be loaded, once is enough): corrupt weights name the folder and the reason."""
    from tests.conftest import compose_config
    from training.common.errors import DataError
    from training.models.hardware import resolve_hardware
    from training.models.student import attach_adapter, load_student

    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16,
                                                              "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}))
    (tmp_path / "adapter_model.safetensors").write_text("not safetensors\n")
    cfg = compose_config("+level=4", "model=tiny-qwen3", "hardware=cpu", "train.quantization=none")
    student = load_student(cfg.model, cfg.train, resolve_hardware(cfg.hardware))
    with pytest.raises(DataError) as caught:
        attach_adapter(student, tmp_path)
    assert str(caught.value) == (f"cannot load the LoRA adapter {tmp_path} onto {student.path}: SafetensorError: "
                                 "Error while deserializing header: header too large")
    assert student.adapter == "none"
