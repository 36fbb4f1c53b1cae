"""Every setting is checked before any work: a bad value stops the trial before its first stage.

A representative few through ``python -m sweep``; every key's message is a pure-function test in
tests/test_config.py. "Before any work" is read off the run dir: no stage output and no data or
hardware summary in metrics.json (the data stage and the model stages write those first).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.faults.common import one_error_line, run_module


@pytest.mark.parametrize(
    ("args", "message"),
    [(["train.lora_r=0"], "train.lora_r must be an integer >= 1, got 0"),
     (["stages=[eval]", "adapter=none", "eval.extractor=bogus"], "eval.extractor='bogus' is not one of strict, flexible"),
     (["stages=[traces,filter]", "filter.max_think_tokens=-3"],
      "filter.max_think_tokens must be null or an integer >= 1, got -3"),
     (["data.n_train=abc"], "data.n_train must be null or an integer >= 0, got 'abc'")],
)
def test_a_bad_setting_stops_the_trial_before_its_first_stage(tmp_path, fresh_stage_cache, args, message):
    run = tmp_path / "run"
    result = run_module("sweep", "+level=4", "model=tiny-qwen3", "hardware=cpu", "wandb.mode=disabled", *args,
                        f"hydra.run.dir={run}", cwd=tmp_path)
    line = one_error_line(result)
    assert re.fullmatch(r"\[[^\]]+\]\[sweep\]\[ERROR\] - " + re.escape(message), line), line
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error"] == f"ConfigError: {message}"
    assert not {"data", "traces", "filter", "hardware", "train", "eval"} & set(metrics), metrics
    assert sorted(path.name for path in run.iterdir() if not path.name.startswith(".")) == ["metrics.json", "sweep.log"]
    assert not list(fresh_stage_cache.rglob("summary.json"))
