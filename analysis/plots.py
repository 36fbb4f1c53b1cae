"""``pareto.png``: every trial, the front as a step line, CIs, the baselines; one front per series.

Colours belong to levels (the latent level has its own) and are the same in every plot (and in the HTML
report): :func:`trial_color` is the one place a trial's colour is chosen. Series
(several sweeps on one plot) differ by marker and line style. Trials evaluated with thinking off
(``eval.thinking=off``, or the no-think half of ``both``) are hollow markers edged in their level's
colour: a series of their own to the eye, though the front is computed over all of a series' trials.
The baseline is a black star; the other no-adapter runs (the base model in no-think mode, say) are
hollow stars. A green ring marks the front points not significantly worse than their series' best
point (non-inferior at the margin in the paired tests, the best included). Where per-task routing
was computed, the routed policy is a black X at its mean think tokens and accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from analysis.paired_table import PairedEvidence  # noqa: E402
from analysis.route import Routing  # noqa: E402
from analysis.tradeoff import Tradeoff  # noqa: E402
from analysis.trials import Trial  # noqa: E402

LEVEL_COLORS = {1: "#4c72b0", 2: "#55a868", 3: "#c44e52", 4: "#8172b2", 5: "#dd8452"}
LATENT_COLOR = "#17becf"     # the latent level (level.latent), whatever its id
OTHER_COLOR = "#7f7f7f"      # a level outside 1-5
BASELINE_COLOR = "#222222"
MARKERS = ("o", "s", "^", "D", "v", "P")
LINESTYLES = ("-", "--", ":", "-.")
DOMINATED_ALPHA = 0.3
NOT_WORSE_COLOR = "#2ca02c"  # the ring around front points not significantly worse than the best
NO_THINK_LABEL = "no-think (eval.thinking=off)"
OTHER_BASELINES_LABEL = "base model, other runs (no adapter)"
ROUTED_LABEL = "routed policy (per task type)"


def not_worse_label(evidence: Sequence[PairedEvidence]) -> str:
    margins = sorted({e.margin for e in evidence})
    return ("not significantly worse than the best (Δ accuracy's paired 95 % CI lower bound >= -"
            + "/".join(f"{m:g}" for m in margins) + ")")


def level_color(level: int | None) -> str:
    return LEVEL_COLORS.get(level, OTHER_COLOR)


def trial_color(trial: Trial) -> str:
    """A trial's level colour: the latent level's own, else its level id's."""
    return LATENT_COLOR if trial.latent else level_color(trial.level)


def front_steps(tradeoff: Tradeoff) -> tuple[list[float], list[float]]:
    """The front's staircase through its points by think tokens (accuracy never falls along it)."""
    points = sorted((p.trial.mean_think_tokens, p.trial.accuracy) for p in tradeoff.front)
    return [x for x, _ in points], [y for _, y in points]


def _scatter(ax, trials: Sequence[Trial], marker: str, alpha: float, edge: str | None) -> None:
    for trial in trials:
        low, high = trial.accuracy_ci
        color = trial_color(trial)
        # A no-think point is hollow: a black edge would hide the level its colour names.
        face, edge_color = ("none", color) if trial.no_think else (color, edge or color)
        ax.errorbar(trial.mean_think_tokens, trial.accuracy,
                    yerr=[[max(trial.accuracy - low, 0.0)], [max(high - trial.accuracy, 0.0)]],
                    fmt=marker, color=color, alpha=alpha, markersize=7, capsize=3, markerfacecolor=face,
                    markeredgecolor=edge_color, markeredgewidth=1.8 if trial.no_think else 1.0,
                    zorder=3 if edge else 2)
        ax.annotate(trial.label, (trial.mean_think_tokens, trial.accuracy), textcoords="offset points",
                    xytext=(5, 4), fontsize=7, alpha=max(alpha, 0.5))


def _baselines(ax, tradeoff: Tradeoff) -> None:
    if tradeoff.baseline is not None:
        base = tradeoff.baseline
        ax.scatter([base.mean_think_tokens], [base.accuracy], marker="*", s=220, color=BASELINE_COLOR, zorder=4)
        ax.annotate("base", (base.mean_think_tokens, base.accuracy), textcoords="offset points",
                    xytext=(6, -10), fontsize=8)
    for other in tradeoff.other_baselines:
        ax.scatter([other.mean_think_tokens], [other.accuracy], marker="*", s=220, facecolors="none",
                   edgecolors=BASELINE_COLOR, linewidths=1.2, zorder=4)
        ax.annotate(other.label, (other.mean_think_tokens, other.accuracy), textcoords="offset points",
                    xytext=(6, -10), fontsize=7)


def _routed(ax, routing: Routing, name: str) -> None:
    ax.scatter([routing.think_tokens], [routing.accuracy], marker="X", s=150, color="black", zorder=6)
    ax.annotate(name, (routing.think_tokens, routing.accuracy), textcoords="offset points", xytext=(7, 5),
                fontsize=8, fontweight="bold")


def plot_pareto(tradeoffs: Sequence[Tradeoff], path: Path, title: str = "accuracy vs think tokens",
                evidence: Sequence[PairedEvidence] = (), routings: Sequence[Routing | None] = ()) -> Path:
    """Write ``path``; ``routings`` (one per tradeoff, None where not computed) adds each routed policy."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for ev in evidence:
        ringed = [r.trial for r in ev.rows if r.role != "baseline" and r.not_worse]
        ax.scatter([t.mean_think_tokens for t in ringed], [t.accuracy for t in ringed], s=260, facecolors="none",
                   edgecolors=NOT_WORSE_COLOR, linewidths=2.0, zorder=5)
    for index, tradeoff in enumerate(tradeoffs):
        marker, style = MARKERS[index % len(MARKERS)], LINESTYLES[index % len(LINESTYLES)]
        on_front = {id(p.trial) for p in tradeoff.front}
        _scatter(ax, [t for t in tradeoff.trials if id(t) not in on_front], marker, DOMINATED_ALPHA, None)
        _scatter(ax, [p.trial for p in tradeoff.front], marker, 1.0, "black")
        xs, ys = front_steps(tradeoff)
        ax.step(xs, ys, where="post", color="black", linestyle=style, linewidth=1.2, alpha=0.8, zorder=1)
        _baselines(ax, tradeoff)
    for tradeoff, routing in zip(tradeoffs, routings):
        if routing is not None:
            _routed(ax, routing, f"routed ({tradeoff.series})" if len(tradeoffs) > 1 else "routed")
    ax.set_xlabel("mean think tokens per problem")
    ax.set_ylabel("accuracy (95 % Wilson CI)")
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.set_xlim(left=0.0)
    subtitle = "; ".join(f"{t.series}: hypervolume {t.hypervolume:.3g} ({t.hypervolume_share:.1%} of ideal)"
                         for t in tradeoffs)
    ax.set_title(f"{title}\n{subtitle}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(handles=_legend(tradeoffs, evidence, any(r is not None for r in routings)), fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def _legend(tradeoffs: Sequence[Tradeoff], evidence: Sequence[PairedEvidence], routed: bool) -> list[Line2D]:
    tags = {t.level_tag: (t.latent, t.level or 0, trial_color(t)) for tr in tradeoffs for t in tr.trials
            if t.level is not None or t.latent}
    handles = [Line2D([], [], marker="o", linestyle="", color=color, label=tag)
               for tag, (_, _, color) in sorted(tags.items(), key=lambda item: item[1][:2])]
    for index, tradeoff in enumerate(tradeoffs):
        name = f"{tradeoff.series} front" if len(tradeoffs) > 1 else "Pareto front"
        handles.append(Line2D([], [], color="black", linestyle=LINESTYLES[index % len(LINESTYLES)],
                              marker=MARKERS[index % len(MARKERS)] if len(tradeoffs) > 1 else None, label=name))
    if any(t.baseline is not None for t in tradeoffs):
        handles.append(Line2D([], [], marker="*", linestyle="", markersize=12, color=BASELINE_COLOR,
                              label="base model (no adapter)"))
    if any(t.other_baselines for t in tradeoffs):
        handles.append(Line2D([], [], marker="*", linestyle="", markersize=12, markerfacecolor="none",
                              markeredgecolor=BASELINE_COLOR, label=OTHER_BASELINES_LABEL))
    if any(t.no_think for tr in tradeoffs for t in tr.trials + tr.baselines):
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor=OTHER_COLOR,
                              markeredgewidth=1.8, label=NO_THINK_LABEL))
    if routed:
        handles.append(Line2D([], [], marker="X", linestyle="", markersize=10, color="black", label=ROUTED_LABEL))
    handles.append(Line2D([], [], marker="o", linestyle="", color=OTHER_COLOR, alpha=DOMINATED_ALPHA,
                          label="dominated (faded)"))
    if any(e.best is not None for e in evidence):
        handles.append(Line2D([], [], marker="o", linestyle="", markersize=11, markerfacecolor="none",
                              markeredgecolor=NOT_WORSE_COLOR, markeredgewidth=2.0, label=not_worse_label(evidence)))
    return handles
