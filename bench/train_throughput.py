# Train-stage throughput. Run: .venv/bin/python bench/train_throughput.py [--rows 128] [--no-baseline]
"""Our train stage in the precision ``hardware=auto`` picks, against a plain PyTorch loop and against fp32.

In one process, one after the other, each on a freshly loaded student (the embedded
default, SmolLM2-135M-Instruct, NF4 weights, LoRA r16 on every linear layer, the
``train`` defaults) and the same rows (the reference teacher's level-4 SVAMP rows, as
in the demo):

1. the train stage's training step (``training.sft.lora_adapter.train_and_save``) in the auto precision;
2. a plain fwd+bwd+AdamW loop on exactly the batches step 1 trained on (recorded by a
   forward pre-hook), in the same precision, with the LoRA set-up the trainer uses;
3. the train stage in fp32 (same batching), for the fp32 -> auto speed-up;
4. unless ``--no-baseline``: the train stage with the previous defaults, fp32 and uniformly
   shuffled batches (the CPU LM head of ``training.models.lm_head`` is on in every run).

Tokens are the rows' real tokens (padding excluded); seconds are the whole training call,
first-step set-up included, as in a trial. MFU is model FLOPs per second over this
machine's measured matmul peak in the precision used. The FLOP convention is the usual
6 x N x tokens (N: parameters of every matmul, i.e. the linear layers, the LM head and
LoRA; embeddings lookups and attention scores not counted); a frozen NF4 base computes
no weight gradients, so its real matmul work is nearer 4 x N, printed beside it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sweep.cli import compose_config  # noqa: E402
from sweep.stages import filter as filter_stage  # noqa: E402
from sweep.stages import traces as traces_stage  # noqa: E402
from sweep.stages.base import TrialContext  # noqa: E402
from training.common.jsonl import read_jsonl  # noqa: E402
from training.data.levels import level_from_config  # noqa: E402
from training.data.problems import load_problems  # noqa: E402
from training.models.cpu_precision import _cpu_model, matmul_gflops, native_bf16_flags  # noqa: E402
from training.models.hardware import apply_threads, resolve_hardware  # noqa: E402
from training.models.student import load_student  # noqa: E402
from training.sft.lora_adapter import train_and_save  # noqa: E402
from training.sft.trainer import build_peft_config  # noqa: E402


def sft_rows(cfg, work: Path) -> list[dict]:
    """The level's filtered SFT rows, made by the trial's own traces and filter stages."""
    ctx = TrialContext(cfg, work, level_from_config(cfg.level), ["traces", "filter"], splits=load_problems(cfg.data))
    traces_stage.run(ctx, {"problems": ctx.splits.train})
    filter_stage.run(ctx, {"traces": work / traces_stage.TRACES_FILE})
    return read_jsonl(work / filter_stage.FILTERED_FILE)


def stage(cfg, rows, work: Path, record: list | None = None) -> dict:
    """One train stage on a fresh student; ``record`` collects the batches the model was given."""
    hardware = resolve_hardware(cfg.hardware)
    student = load_student(cfg.model, cfg.train, hardware)
    if record is not None:
        def keep(_module, _args, kwargs):
            record.append({key: kwargs[key].clone() for key in ("input_ids", "attention_mask", "labels")})
        student.model.register_forward_pre_hook(keep, with_kwargs=True)
    summary = train_and_save(student, rows, cfg.model, cfg.train, hardware, work, save=False)
    summary["matmul_parameters"] = matmul_parameters(student.model)
    return summary


def plain_loop(cfg, batches: list[dict]) -> tuple[int, float, float]:
    """fwd + bwd + AdamW on ``batches``, nothing else: (tokens, seconds, last loss)."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    hardware = resolve_hardware(cfg.hardware)
    model = load_student(cfg.model, cfg.train, hardware).model
    set_seed(int(cfg.train.seed))
    model = get_peft_model(prepare_model_for_kbit_training(model, use_gradient_checkpointing=False),
                           build_peft_config(cfg.train))
    for param in model.parameters():  # as SFTTrainer does for a quantised base: LoRA weights in bf16
        if param.requires_grad:
            param.data = param.data.to(torch.bfloat16)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=float(cfg.train.learning_rate))
    model.train()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=hardware.precision == "bf16")
    tokens, start = 0, time.perf_counter()
    for batch in batches:
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        tokens += int(batch["attention_mask"].sum())
    return tokens, time.perf_counter() - start, float(loss)


def matmul_parameters(model) -> int:
    """N for the FLOP count: weights of every linear layer (4-bit ones at their logical size) and the LM head."""
    import torch

    total = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features
    return total


def padding(batches: list[dict]) -> float:
    positions = sum(b["attention_mask"].numel() for b in batches)
    return 1 - sum(int(b["attention_mask"].sum()) for b in batches) / positions


def line(label: str, summary: dict, pad: float | None = None) -> str:
    tokens = summary["train_tokens_per_second"] * summary["train_seconds"]
    extra = f", padding {100 * pad:.1f}%" if pad is not None else ""
    return (f"{label}: {tokens:,.0f} tokens in {summary['train_seconds']:.1f}s = {summary['train_tokens_per_second']:.1f}"
            f" tokens/s ({summary['steps']} steps, loss {summary['train_loss']:.4f}{extra})")


def main() -> None:
    import torch
    import transformers
    import trl

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--level", default="4")
    parser.add_argument("--rows", type=int, default=128, help="training rows (the demo trains on 128)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every usable core)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the fp32 run with shuffled batches")
    args = parser.parse_args()

    base = [f"+level={args.level}", f"model={args.model}", f"data.n_train={args.rows}", "hardware=auto",
            "wandb.mode=disabled"] + ([f"hardware.num_threads={args.threads}"] if args.threads else [])
    cfg = compose_config(*base)
    hardware = resolve_hardware(cfg.hardware)
    apply_threads(hardware)
    work = Path(tempfile.mkdtemp(prefix="train-throughput-"))
    rows = sft_rows(cfg, work)
    print(f"machine: {_cpu_model()}, native bf16 {native_bf16_flags() or 'none'}, {hardware.num_threads} threads; "
          f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")
    print(f"precision: auto -> {hardware.precision} ({hardware.precision_reason})")
    print(f"rows: {len(rows)} level-{args.level} rows, batch {cfg.train.batch_size}, {cfg.train.epochs} epoch(s), "
          f"lora r{cfg.train.lora_r}, {cfg.train.quantization} base")
    batches: list[dict] = []
    auto = stage(cfg, rows, work / "auto", batches)
    print(line(f"train stage, {hardware.precision}", auto, padding(batches)), flush=True)
    tokens, seconds, loss = plain_loop(cfg, batches)
    plain = tokens / seconds
    print(f"plain fwd+bwd+AdamW loop, {hardware.precision}, same batches: {tokens:,} tokens in {seconds:.1f}s = "
          f"{plain:.1f} tokens/s (last loss {loss:.4f})", flush=True)
    fp32 = stage(compose_config(*base, "hardware.precision=fp32"), rows, work / "fp32")
    print(line("train stage, fp32", fp32), flush=True)
    before = None
    if not args.no_baseline:
        shuffled: list[dict] = []
        before = stage(compose_config(*base, "hardware.precision=fp32", "train.group_by_length=false"), rows,
                       work / "before", shuffled)
        print(line("train stage, fp32, shuffled batches", before, padding(shuffled)), flush=True)
    dtype = torch.bfloat16 if hardware.precision == "bf16" else torch.float32
    peak = matmul_gflops(dtype, hardware.num_threads, (2048, 2048, 2048), repeats=10)
    peak32 = peak if dtype == torch.float32 else matmul_gflops(torch.float32, hardware.num_threads, (2048, 2048, 2048))
    n = auto["matmul_parameters"]
    flops = auto["train_tokens_per_second"] * n / 1e9
    print(f"matmul peak (2048^3, {hardware.num_threads} threads): {hardware.precision} {peak:.0f} GFLOP/s, "
          f"fp32 {peak32:.0f} GFLOP/s")
    print(f"MFU ({hardware.precision}, N = {n / 1e6:.1f}M matmul parameters): 6N {100 * 6 * flops / peak:.1f}%, "
          f"4N {100 * 4 * flops / peak:.1f}%; fp32 run against the fp32 peak: 6N "
          f"{100 * 6 * fp32['train_tokens_per_second'] * n / 1e9 / peak32:.1f}%")
    print(f"ratio (train stage / plain loop, {hardware.precision}): {auto['train_tokens_per_second'] / plain:.2f}x")
    print(f"ratio (train stage {hardware.precision} / fp32, auto precision speed-up): "
          f"{auto['train_tokens_per_second'] / fp32['train_tokens_per_second']:.2f}x")
    if before is not None:
        print(f"ratio (train stage {hardware.precision} length-grouped / fp32 shuffled, the previous defaults): "
              f"{auto['train_tokens_per_second'] / before['train_tokens_per_second']:.2f}x")


if __name__ == "__main__":
    main()
