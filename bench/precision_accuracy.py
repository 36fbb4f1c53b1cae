# Accuracy of one precision against another, paired. Run: .venv/bin/python bench/precision_accuracy.py DIR_A DIR_B
"""Trials of the same levels in two sweeps (say, bf16 and fp32), compared level by level on the same problems.

Each sweep dir is read as analysis reads it (run dirs' metrics.json and eval_samples.jsonl).
Trials are matched by level and by adapter-or-baseline; for each pair this prints both
accuracies, the paired difference (A - B) with its 95 % CI, the exact McNemar p and how
many eval problems would settle a difference of ``--margin`` either way. It answers
"does computing in bf16 cost accuracy?" with the same statistics `analysis choose` uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.eval_sets import read_results  # noqa: E402
from analysis.paired import compare  # noqa: E402
from analysis.paired_table import p_text  # noqa: E402
from analysis.trials import load_trials  # noqa: E402


def precision_of(run_dir: Path | None) -> str:
    metrics = json.loads((run_dir / "metrics.json").read_text()) if run_dir else {}
    return (metrics.get("hardware") or {}).get("precision", "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="sweep dir A (e.g. a bf16 demo)")
    parser.add_argument("b", help="sweep dir B (e.g. the same levels in fp32: hardware=cpu)")
    parser.add_argument("--margin", type=float, default=0.02, help="difference that matters (default 0.02)")
    args = parser.parse_args()
    sides = [{(t.baseline, t.level): t for t in load_trials(path).trials} for path in (args.a, args.b)]
    shared = sorted(set(sides[0]) & set(sides[1]), key=lambda key: (key[0], key[1] or 0))
    if not shared:
        sys.exit("no level was run in both sweeps")
    first_a, first_b = sides[0][shared[0]], sides[1][shared[0]]
    print(f"A: {args.a} ({precision_of(first_a.run_dir)})   B: {args.b} ({precision_of(first_b.run_dir)})")
    print(f"{'trial':<10} {'n':>4} {'acc A':>6} {'acc B':>6}  {'A - B [95 % CI]':<24} {'McNemar p':>9}  "
          f"{'A only':>6} {'B only':>6}")
    for key in shared:
        a, b = sides[0][key], sides[1][key]
        result = compare(read_results(a), read_results(b), args.margin)
        low, high = result.ci
        name = f"base L{key[1]}" if key[0] else f"L{key[1]}"
        print(f"{name:<10} {result.counts.n:>4} {a.accuracy:>6.3f} {b.accuracy:>6.3f}  "
              f"{result.difference:+.3f} [{low:+.3f}, {high:+.3f}]{'':<4} {p_text(result.p_value):>9}  "
              f"{result.counts.only_a:>6} {result.counts.only_b:>6}")


if __name__ == "__main__":
    main()
