"""The adapter's README.md: what it was trained on and how it scored, readable on its own."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def render_model_card(info: Mapping[str, Any]) -> str:
    """Markdown with YAML front matter (the hub's model card format) from a trial's summary.

    ``info["metrics"]`` holds the scores to show, in order (the trial record's ``SCORES``)."""
    metrics = info.get("metrics") or {}
    lines = [
        "---",
        f"base_model: {info['base_model']}",
        "library_name: peft",
        "tags: [cot-pareto, lora, qlora, chain-of-thought-compression]",
        "---",
        "",
        f"# cot-pareto adapter: level {info['level']} ({info['level_name']})",
        "",
        f"A LoRA adapter that teaches `{info['base_model']}` to reason at compression level {info['level']}: "
        f"{info['level_style']}",
        "",
        "| setting | value |",
        "| --- | --- |",
        f"| base model | `{info['base_model']}` ({info['base_path']}) |",
        f"| weights during training | {info['quantization']} |",
        f"| data | {info['data']} ({info['n_train']} training rows after filtering) |",
        f"| teacher | {info['teacher']} |",
        f"| LoRA | r={info['lora_r']}, alpha={info['lora_alpha']}, dropout={info['lora_dropout']}, "
        f"targets {info['target_modules']} |",
        f"| training | {info['epochs']} epochs, lr {info['learning_rate']}, batch {info['batch_size']}, "
        f"precision {info['precision']} |",
        f"| training loss | {info.get('train_loss')} |",
        "",
        "## Evaluation",
        "",
    ]
    if metrics:
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {key} | {value} |" for key, value in metrics.items()]
    else:
        lines.append("Not evaluated yet.")
    lines += ["", "Load it with:", "", "```python", "from peft import AutoPeftModelForCausalLM",
              "model = AutoPeftModelForCausalLM.from_pretrained(\"<this folder>\")", "```", ""]
    return "\n".join(lines)


def write_model_card(adapter_dir: Path, info: Mapping[str, Any]) -> Path:
    path = adapter_dir / "README.md"
    path.write_text(render_model_card(info))
    return path
