"""Hand-made run dirs, laid out as the pipeline writes them, for the analysis tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def write_run_dir(root: Path, name: str, level: int, accuracy: float | None = None, think: float | None = None,
                  ci: tuple[float, float] | None = None, adapter: str = "auto", status: str = "completed",
                  overrides: list[str] | None = None, n_eval: int = 20, eval_seconds: float = 10.0,
                  samples: list[dict] | None = None) -> Path:
    run_dir = root / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides or [f"+level='{level}'"]))
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"model": {"name": "tiny"}, "data": {"name": "svamp"}, "sampling": {"max_new_tokens": 64}}))
    if status == "running":
        return run_dir  # a trial that never wrote its metrics.json
    metrics = {"status": status, "level": level, "adapter": adapter, "model": "tiny", "data": {"name": "svamp"}}
    if status == "failed":
        metrics["error"] = "TrainingError: the loss became nan at step 3"
    else:
        ci = ci or (max(0.0, accuracy - 0.1), min(1.0, accuracy + 0.1))
        metrics.update(accuracy=accuracy, accuracy_ci=list(ci), mean_think_tokens=think, mean_completion_tokens=think + 5,
                       n_eval=n_eval, eval_seconds=eval_seconds, n_train=0 if adapter == "none" else 32)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if samples is not None:
        (run_dir / "eval_samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in samples))
    return run_dir


def sample(correct: bool, think_tokens: int, gold: str = "7") -> dict:
    return {"id": "p1", "prompt": [{"role": "user", "content": "How many?"}], "gold": gold,
            "extracted": gold if correct else "3", "correct": correct, "think_tokens": think_tokens,
            "completion_tokens": think_tokens + 5, "output": f"<think>\na=3+4=7\n</think>\n#### {gold if correct else 3}"}


def demo_like_sweep(root: Path) -> Path:
    """Five levels, two ranks each, a baseline, a failed and an unfinished trial."""
    points = {1: (0.60, 40.0), 2: (0.58, 20.0), 3: (0.50, 12.0), 4: (0.50, 15.0), 5: (0.20, 5.0)}
    for level, (accuracy, think) in points.items():
        for rank, shift in ((8, 0.0), (32, -0.05)):
            rows = [sample(i % 2 == 0, int(think) + i) for i in range(4)]
            write_run_dir(root, f"L{level}_r{rank}", level, accuracy + shift, think + rank / 8,
                          overrides=[f"+level={level}", f"train.lora_r={rank}", "hardware.num_threads=1"],
                          samples=rows)
    write_run_dir(root, "base_L1", 1, 0.62, 50.0, adapter="none", eval_seconds=20.0,
                  samples=[sample(True, 50), sample(False, 49)])
    write_run_dir(root, "L2_nan", 2, status="failed")
    write_run_dir(root, "L3_killed", 3, status="running")
    return root
