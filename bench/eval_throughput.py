# Evaluation throughput. Run: .venv/bin/python bench/eval_throughput.py [--problems 64] [--batch-size 32] [--shots 0]
"""Our batched evaluator against a one-problem-at-a-time ``generate`` loop, same model, problems and settings.

Both sides run in this process, one after the other, from the same loaded student
(the embedded default: SmolLM2-135M-Instruct, NF4 weights as in training, in the
precision ``hardware`` resolves to: bf16 on a CPU with native bf16, else fp32),
greedy, with the same stop token and ``max_new_tokens``. The sequential side is
the loop a first script writes over the student as loaded; the evaluator does what
a trial's eval stage does (``inference_model``, then ``evaluate``), and its time
includes building the model it generates with. Throughput is generated tokens
(stop token included, padding excluded) per second. The ratio is what matters;
absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sweep.cli import compose_config  # noqa: E402
from training.data.levels import build_prompt, level_from_config, template_keeps_earlier_think  # noqa: E402
from training.data.problems import load_problems  # noqa: E402
from training.evaluation.evaluate import evaluate  # noqa: E402
from training.evaluation.inference import inference_model  # noqa: E402
from training.models.hardware import apply_threads, resolve_hardware  # noqa: E402
from training.models.loading import stop_token_id  # noqa: E402
from training.models.student import load_student  # noqa: E402
from training.models.tokens import TokenCounter  # noqa: E402


def sequential(student, prompts, max_new_tokens: int, stop: int) -> tuple[int, float, list[str]]:
    """The loop a first script writes: one prompt, one generate call, no padding."""
    import torch

    tokens, seconds, texts = 0, 0.0, []
    for prompt in prompts:
        ids = student.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True, return_tensors="pt")
        began = time.perf_counter()
        with torch.inference_mode():
            out = student.model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                         top_p=None, top_k=None, eos_token_id=stop,
                                         pad_token_id=student.tokenizer.pad_token_id)
        seconds += time.perf_counter() - began
        new = out[0, ids["input_ids"].shape[1]:].tolist()
        tokens += len(new)
        texts.append(student.tokenizer.decode(new, skip_special_tokens=True))
    return tokens, seconds, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--level", default="4")
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--shots", type=int, default=0, help="few-shot exemplars per prompt (the baseline uses 2)")
    parser.add_argument("--precision", default="", help="fp32 or bf16 (default: what hardware=auto picks on CPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every usable core)")
    args = parser.parse_args()

    overrides = [f"+level={args.level}", f"model={args.model}", f"data.n_eval={args.problems}", "hardware=auto",
                 "hardware.device=cpu", f"sampling.max_new_tokens={args.max_new_tokens}"]
    if args.precision:
        overrides.append(f"hardware.precision={args.precision}")
    if args.threads:
        overrides.append(f"hardware.num_threads={args.threads}")
    cfg = compose_config(*overrides)
    hardware = resolve_hardware(cfg.hardware)
    apply_threads(hardware)
    level = level_from_config(cfg.level)
    problems = load_problems(cfg.data).eval
    student = load_student(cfg.model, cfg.train, hardware)
    stop = stop_token_id(student.tokenizer, cfg.model)
    in_system = args.shots > 0 and not template_keeps_earlier_think(student.tokenizer)
    prompts = [build_prompt(level, p.question, cfg.prompt.system, args.shots, shots_in_system=in_system)
               for p in problems]

    seq_tokens, seq_seconds, seq_texts = sequential(student, prompts, args.max_new_tokens, stop)
    began = time.perf_counter()
    runner = inference_model(student.model, hardware.device, hardware.precision)
    setup = time.perf_counter() - began
    rows, metrics = evaluate(runner.model, student.tokenizer, problems, level, TokenCounter(student.path),
                             sampling=cfg.sampling, batch_size=args.batch_size, stop_token_id=stop,
                             system=cfg.prompt.system, n_shots=args.shots, progress=False, autocast=runner.autocast)
    same = sum(a == r["output"] for a, r in zip(seq_texts, rows))
    seq_rate = seq_tokens / seq_seconds
    seconds = metrics["eval_seconds"] + setup
    ours = metrics["eval_generated_tokens"] / seconds
    print(f"model {cfg.model.name} ({student.quantization} weights), {len(problems)} {cfg.data.name} problems, "
          f"{args.shots} shots, greedy, max_new_tokens {args.max_new_tokens}, {hardware.num_threads} threads, "
          f"precision {hardware.precision} (hardware {hardware.name})")
    print(f"sequential generate loop (the student as loaded, {hardware.precision}): {seq_tokens} tokens in "
          f"{seq_seconds:.1f}s = {seq_rate:.1f} tokens/s")
    print(f"batched evaluator (batch {args.batch_size}, {runner.note}): {metrics['eval_generated_tokens']} tokens in "
          f"{seconds:.1f}s = {ours:.1f} tokens/s ({setup:.1f}s building the model, {metrics['eval_seconds']:.1f}s "
          f"generating)")
    print(f"  prefill: {metrics['eval_prompt_tokens']} prompt tokens ({metrics['eval_prefill_computed_tokens']} "
          f"computed, {metrics['eval_shared_prefix_tokens']} shared by every prompt) in "
          f"{metrics['eval_prefill_seconds']:.1f}s = {metrics['eval_prefill_tokens_per_second']:.0f} tokens/s")
    print(f"  decode: {metrics['eval_decode_seconds']:.1f}s = {metrics['eval_decode_tokens_per_second']:.0f} tokens/s "
          f"(generated tokens after each row's first)")
    print(f"identical outputs: {same}/{len(problems)} (padding and batching change float rounding, so some differ)")
    print(f"ratio (batched / sequential tokens per second): {ours / seq_rate:.2f}x")


if __name__ == "__main__":
    main()
