"""The trial record owns metrics.json's schema: its key order, the headline metrics, and who may import it."""

from __future__ import annotations

import subprocess
import sys

from sweep.trial_record import HEADLINE_METRICS, SCORES, TrialRecord


def test_metrics_json_puts_the_status_first_and_the_headline_after_eval():
    record = TrialRecord(run_dir="/r", level=4, stages=["eval"], adapter="none",
                         eval={"accuracy": 0.5, "n_eval": 2, "eval_seconds": 1.0, "backend": "transformers"},
                         resources={"peak_rss_mb": 10.0})
    record.fail(ValueError("boom"))
    record.seconds = 3.0
    assert list(record.to_json()) == ["status", "run_dir", "level", "stages", "adapter", "eval", "accuracy", "n_eval",
                                      "eval_seconds", "error", "seconds", "peak_rss_mb"]
    assert record.to_json()["status"] == "failed" and record.to_json()["error"] == "ValueError: boom"
    assert "backend" not in record.headline() and record.headline()["accuracy"] == 0.5
    again = TrialRecord.from_json(record.to_json())
    assert again.to_json() == record.to_json()


def test_one_list_of_metric_names():
    assert HEADLINE_METRICS[:len(SCORES)] == SCORES and len(set(HEADLINE_METRICS)) == len(HEADLINE_METRICS)


def test_the_sweeper_reads_the_record_without_the_trial_stack():
    code = ("import sys, hydra_plugins.cot_pareto_sweeper.pareto_sweeper; "
            "print(sorted(m for m in ('sweep.pipeline', 'sweep.stages', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
