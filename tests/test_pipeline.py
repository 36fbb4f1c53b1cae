"""The data stages end to end, in process, on the real config and shipped GSM8K (Qwen3 token counts)."""

import json

import pytest

from sweep.pipeline import run_pipeline
from tests.conftest import compose_config
from training.common.errors import ConfigError
from training.common.jsonl import read_jsonl
from training.grading.answers import is_correct

# The data stages alone, counting tokens with the tiny Qwen3's tokenizer (Qwen3's own).
DATA = ("stages=[traces,filter]", "data=gsm8k", "model=tiny-qwen3")


@pytest.fixture(scope="module")
def level_runs(tmp_path_factory):
    """Level -> (filter report, kept rows) for 500 GSM8K train problems at every level."""
    runs = {}
    for level in range(1, 6):
        out = tmp_path_factory.mktemp(f"L{level}")
        run_pipeline(compose_config(f"+level={level}", *DATA, "data.n_train=500"), out)
        runs[level] = (json.loads((out / "filter_report.json").read_text()), read_jsonl(out / "filtered.jsonl"), out)
    return runs


def test_level_4_acceptance(level_runs):
    report, kept, out = level_runs[4]
    assert report["n_problems"] == 500 and report["keep_rate"] >= 0.70
    assert 25 <= report["think_chars"]["mean"] <= 70
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["filter"]["kept_problems"] == report["kept_problems"]
    assert {p.name for p in out.iterdir()} >= {"traces.jsonl", "filtered.jsonl", "filter_report.json", "metrics.json"}


def test_levels_get_shorter_and_every_kept_answer_is_correct(level_runs):
    chars = {level: report["think_chars"]["mean"] for level, (report, _, _) in level_runs.items()}
    tokens = {level: report["think_tokens"]["mean"] for level, (report, _, _) in level_runs.items()}
    assert chars[1] >= 3 * chars[4]
    assert min(chars, key=chars.get) == 5 and min(tokens, key=tokens.get) == 5
    assert [tokens[i] for i in range(1, 6)] == sorted(tokens.values(), reverse=True)
    for level, (_, kept, _) in level_runs.items():
        for row in kept:
            assert row["level"] == level
            user = row["prompt"][-1]["content"]
            assert user.startswith(f"Solve this using Level {level} (")
            completion = row["completion"][0]["content"]
            assert completion.startswith("<think>\n") and "\n</think>\n#### " in completion
            assert is_correct(completion.rsplit("#### ", 1)[1], row["answer"]), row["id"]


def test_filter_alone_reads_earlier_traces(level_runs, tmp_path):
    _, kept, earlier = level_runs[4]
    cfg = compose_config("+level=4", *DATA, "stages=[filter]", f"+filter.traces_path={earlier / 'traces.jsonl'}",
                         "filter.select=shortest")
    summary = run_pipeline(cfg, tmp_path)
    assert summary["stages"] == ["filter"] and summary["filter"]["kept_problems"] == len(kept)


def test_failed_run_still_writes_metrics(tmp_path):
    with pytest.raises(ConfigError, match="stage 'filter' needs traces"):
        run_pipeline(compose_config("+level=4", *DATA, "stages=[filter]"), tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "needs traces" in metrics["error"]


def test_svamp_runs(tmp_path):
    summary = run_pipeline(compose_config("+level=4", *DATA, "data=svamp", "data.n_train=100", "data.n_eval=50"), tmp_path)
    assert summary["filter"]["keep_rate"] > 0.95 and summary["data"]["n_eval"] == 50
