"""Hand-made run dirs, laid out as the pipeline writes them, for the analysis tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def write_run_dir(root: Path, name: str, level: int, accuracy: float | None = None, think: float | None = None,
                  ci: tuple[float, float] | None = None, adapter: str = "auto", status: str = "completed",
                  overrides: list[str] | None = None, n_eval: int = 20, eval_seconds: float = 10.0,
                  samples: list[dict] | None = None, thinking: str | None = None) -> Path:
    run_dir = root / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides or [f"+level='{level}'"]))
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"model": {"name": "tiny"}, "data": {"name": "svamp"}, "sampling": {"max_new_tokens": 64}}))
    if status == "running":
        return run_dir  # a trial that never wrote its metrics.json
    metrics = {"status": status, "level": level, "adapter": adapter, "model": "tiny", "data": {"name": "svamp"}}
    if thinking is not None:  # "off": a no-think record, e.g. write_run_dir(trial_dir, "no_think", ..., thinking="off")
        metrics["thinking"] = thinking
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


def sample(correct: bool, think_tokens: int, gold: str = "7", problem: str = "p1",
           strict: bool | None = None) -> dict:
    return {"id": problem, "prompt": [{"role": "user", "content": "How many?"}], "gold": gold,
            "extracted": gold if correct else "3", "correct": correct,
            "correct_strict": correct if strict is None else strict, "think_tokens": think_tokens,
            "completion_tokens": think_tokens + 5, "output": f"<think>\na=3+4=7\n</think>\n#### {gold if correct else 3}"}


def graded(correct: list[bool], think_tokens: int = 10, first: int = 0) -> list[dict]:
    """``eval_samples.jsonl`` rows for problems ``p{first:03d}``, ... with these results, in order."""
    return [sample(ok, think_tokens + i % 3, problem=f"p{first + i:03d}") for i, ok in enumerate(correct)]


def nested(accuracy: float, n: int = 100) -> list[bool]:
    """The first ``accuracy * n`` problems right: two such trials disagree on their difference only."""
    return [i < round(accuracy * n) for i in range(n)]


def demo_like_sweep(root: Path) -> Path:
    """Five levels, two ranks each, a baseline, a failed and an unfinished trial; 100 shared eval problems."""
    points = {1: (0.60, 40.0), 2: (0.58, 20.0), 3: (0.50, 12.0), 4: (0.50, 15.0), 5: (0.20, 5.0)}
    for level, (accuracy, think) in points.items():
        for rank, shift in ((8, 0.0), (32, -0.05)):
            write_run_dir(root, f"L{level}_r{rank}", level, accuracy + shift, think + rank / 8,
                          overrides=[f"+level={level}", f"train.lora_r={rank}", "hardware.num_threads=1"],
                          n_eval=100, eval_seconds=50.0, samples=graded(nested(accuracy + shift), int(think)))
    write_run_dir(root, "base_L1", 1, 0.62, 50.0, adapter="none", n_eval=100, eval_seconds=100.0,
                  samples=graded(nested(0.62), 50))
    write_run_dir(root, "L2_nan", 2, status="failed")
    write_run_dir(root, "L3_killed", 3, status="running")
    return root


def paired_sweep(root: Path) -> Path:
    """400 shared problems: a best point, a shorter one just behind it, a clearly worse one, and one
    graded on other problems (on the front, but not pairable)."""
    best = [i < 240 for i in range(400)]
    close = [(i < 240 and i not in (0, 1, 2, 3)) or i in (300, 301, 302) for i in range(400)]  # lost 4, won 3
    for name, level, think, rows in (("L1", 1, 40.0, graded(best)), ("L2", 2, 20.0, graded(close)),
                                     ("L4", 4, 10.0, graded(nested(0.5, 400))),
                                     ("L3_other", 3, 15.0, graded(nested(0.55, 400), first=1000))):
        accuracy = sum(row["correct"] for row in rows) / len(rows)
        write_run_dir(root, name, level, accuracy, think, n_eval=400, samples=rows)
    return root
