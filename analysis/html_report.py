"""``report.html``: one self-contained page (plotly.js inlined, no network) for a sweep or a comparison.

It holds the interactive Pareto scatter (hover shows a trial's parameters), the front table,
the paired table (each front point and the baseline against the best point), per-task routing
where the samples carry task types, each level's accuracy and think-token distribution from
``eval_samples.jsonl``, example outputs per level, and each series' hypervolume.

The scatter (``analysis/scatter.py``) draws as ``pareto.png`` does. "L4" and "L4 no-think", and the
base model thinking on and off, are kept apart wherever trials are pooled per level. The routing
section shows, per series, each task type's chosen setting against the type's best and the routed
policy against the best single setting, or in one line why routing could not be computed.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.paired_table import METHODS, PairedEvidence, delta_text, p_text
from analysis.plots import BASELINE_COLOR, trial_color
from analysis.route import Routing, decision_text, routing_line
from analysis.route_crossfit import crossfit_line
from analysis.scatter import pareto_figure
from analysis.tradeoff import Tradeoff
from analysis.trials import Trial
from training.common.jsonl import read_jsonl

PARETO_DIV = "pareto-plot"


def samples(trial: Trial) -> list[dict[str, Any]]:
    path = trial.run_dir / "eval_samples.jsonl" if trial.run_dir else None
    return read_jsonl(path) if path is not None and path.is_file() else []


def _level_key(trial: Trial) -> str:
    key = "base" if trial.baseline else trial.level_tag
    return f"{key} no-think" if trial.no_think else key


def _key_order(key: str) -> tuple[bool, str]:
    return (not key.startswith("base"), key)


def levels_figure(tradeoffs: Sequence[Tradeoff], rows_of: dict[int, list[dict[str, Any]]]) -> go.Figure:
    """Per level (all its trials' samples pooled): accuracy, and the distribution of think tokens."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy per level (samples pooled over trials)",
                                                        "think tokens per problem"))
    for tr in tradeoffs:
        pooled: dict[str, list[dict[str, Any]]] = defaultdict(list)
        colors: dict[str, str] = {}
        for trial in list(tr.trials) + tr.baselines:
            pooled[_level_key(trial)].extend(rows_of.get(id(trial), []))
            colors[_level_key(trial)] = BASELINE_COLOR if trial.baseline else trial_color(trial)
        keys = sorted((k for k in pooled if pooled[k]), key=_key_order)
        fig.add_trace(go.Bar(x=keys, y=[sum(bool(r.get("correct")) for r in pooled[k]) / len(pooled[k]) for k in keys],
                             marker_color=[colors[k] for k in keys], name=f"{tr.series} accuracy",
                             hovertext=[f"{len(pooled[k])} samples" for k in keys]), row=1, col=1)
        for key in keys:
            fig.add_trace(go.Box(x=[key] * len(pooled[key]), y=[r.get("think_tokens", 0) for r in pooled[key]],
                                 marker_color=colors[key], name=f"{tr.series} {key}", showlegend=False,
                                 boxpoints=False), row=1, col=2)
    fig.update_layout(template="plotly_white", height=420, barmode="group", boxmode="group", showlegend=False)
    return fig


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.0%}"


def front_table(tradeoffs: Sequence[Tradeoff]) -> str:
    rows = [[tr.series, p.trial.label, p.trial.name,
             ", ".join(f"{k}={v}" for k, v in sorted(p.trial.params.items()) if k != "level"),
             f"{p.trial.accuracy:.3f} [{p.trial.accuracy_ci[0]:.3f}, {p.trial.accuracy_ci[1]:.3f}]",
             f"{p.trial.mean_think_tokens:.1f}", _pct(p.token_saving), _pct(p.latency_saving),
             "-" if p.accuracy_change is None else f"{p.accuracy_change:+.3f}"]
            for tr in tradeoffs for p in tr.front]
    return _table(["series", "level", "trial", "settings", "accuracy [95 % CI]", "think tokens",
                   "think tokens saved", "eval time saved", "accuracy vs base"], rows)


def paired_section(evidence: Sequence[PairedEvidence]) -> str:
    """Per series: do the trials share the eval problems, and each front point and the baseline vs the best."""
    parts = []
    for ev in evidence:
        parts.append(f"<p><b>{html.escape(ev.series)}</b>: {html.escape(ev.sets.statement())}.</p>")
        if ev.best is not None:
            rows = [['base' if r.trial.baseline else r.trial.level_tag, r.trial.name, r.role,
                     f"{r.trial.mean_think_tokens:.1f}", f"{r.trial.accuracy:.3f}", delta_text(r),
                     "-" if r.result is None else p_text(r.result.p_value),
                     "reference" if r.role == "best" else ("-" if r.result is None else r.result.verdict),
                     "-" if r.result is None else r.result.n_to_decide_text(), "yes" if r.not_worse else "no"]
                    for r in ev.rows]
            parts.append(_table(["level", "trial", "role", "think tokens", "accuracy",
                                 f"Δ accuracy vs best ({ev.best.name}) [95 % CI]", "McNemar p",
                                 f"non-inferiority at margin {ev.margin:g}", "n to decide",
                                 "not significantly worse"], rows))
        parts += [f"<p>Note: {html.escape(note)}.</p>" for note in ev.notes]
    if any(ev.best is not None for ev in evidence):
        parts.append(f"<p>Not significantly worse than the best means non-inferior: the paired 95 % CI lower bound "
                     f"of (accuracy - the best's) is at least -margin; ringed in green in the plot. "
                     f"{html.escape(METHODS)}.</p>")
    return "".join(parts)


def routing_section(tradeoffs: Sequence[Tradeoff], routings: Sequence[Routing | None],
                    notes: Sequence[str | None]) -> str:
    """Per series: the routing table and the routed policy against the best single setting, or why not."""
    parts = []
    for tr, routing, note in zip(tradeoffs, routings, notes):
        series = f"<b>{html.escape(tr.series)}</b>"
        if routing is None:
            parts.append(f"<p>{series}: routing not computed: {html.escape(note or 'no reason given')}</p>")
            continue
        rows = [[r.task_type, r.n, r.chosen.name, f"{r.accuracy:.3f}", f"{r.think_tokens:.1f}",
                 f"{r.best.name} ({r.best_accuracy:.3f})", decision_text(r)] for r in routing.routes]
        parts += [f"<p>{series}: per task type, the setting with the fewest think tokens with "
                  f"{html.escape(routing.bound)}; chosen - best is the paired 95 % CI of its accuracy minus the "
                  "type's best on the type's problems. The routed policy (a black X in the plot) answers each "
                  "problem with its type's choice.</p>",
                  _table(["task type", "n", "chosen setting", "accuracy", "think tokens", "type's best (accuracy)",
                          "chosen - best"], rows),
                  f"<p>{html.escape(routing_line(routing))}</p>",
                  f"<p>{html.escape(crossfit_line(routing.crossfit))}</p>"]
        if routing.left_out:
            parts.append(f"<p>Left out: {html.escape('; '.join(routing.left_out))}</p>")
    return "".join(parts)


def _question(row: dict[str, Any], limit: int = 400) -> str:
    """The problem as the student saw it: the last user message of the prompt (exemplars come before it)."""
    users = [m.get("content", "") for m in row.get("prompt") or [] if isinstance(m, dict) and m.get("role") == "user"]
    text = str(users[-1]) if users else ""
    return text if len(text) <= limit else text[:limit] + "..."


def _examples(tradeoffs: Sequence[Tradeoff], rows_of: dict[int, list[dict[str, Any]]], per_level: int) -> str:
    """A few outputs per level, from its most accurate trial: correct ones first, then a miss."""
    parts = []
    for tr in tradeoffs:
        best: dict[str, Trial] = {}
        for trial in list(tr.trials) + tr.baselines:
            key = _level_key(trial)
            if rows_of.get(id(trial)) and (key not in best or trial.accuracy > best[key].accuracy):
                best[key] = trial
        for key in sorted(best, key=_key_order):
            rows = rows_of[id(best[key])]
            picked = [r for r in rows if r.get("correct")][:per_level - 1] + [r for r in rows if not r.get("correct")][:1]
            items = "".join(
                f"<li><b>{'correct' if r.get('correct') else 'wrong'}</b> (gold {html.escape(str(r.get('gold')))}, "
                f"read {html.escape(str(r.get('extracted')))}, {r.get('think_tokens')} think tokens)"
                f"<br><i>{html.escape(_question(r))}</i><pre>{html.escape(str(r.get('output', '')))}</pre></li>"
                for r in picked[:per_level])
            parts.append(f"<h3>{html.escape(tr.series)}: {key} ({html.escape(best[key].name)})</h3><ul>{items}</ul>")
    return "".join(parts) or "<p>No eval_samples.jsonl found next to the trials.</p>"


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}pre{background:#f8f8f8;padding:6px;white-space:pre-wrap;font-size:13px}"""


def write_report(tradeoffs: Sequence[Tradeoff], skipped: dict[str, str], path: Path, examples_per_level: int = 3,
                 evidence: Sequence[PairedEvidence] = (), routings: Sequence[Routing | None] = (),
                 routing_notes: Sequence[str | None] = ()) -> Path:
    """Write ``report.html``; ``skipped`` maps each series to its "skipped ..." text, ``routings`` and
    ``routing_notes`` hold one entry per series (a routing, or None and why not; none given: no section)."""
    rows_of = {id(t): samples(t) for tr in tradeoffs for t in list(tr.trials) + tr.baselines}
    pareto_html = pareto_figure(tradeoffs, evidence, routings).to_html(full_html=False, include_plotlyjs=True,
                                                                        div_id=PARETO_DIV)
    levels_html = levels_figure(tradeoffs, rows_of).to_html(full_html=False, include_plotlyjs=False)
    volumes = _table(["series", "completed trials", "front points", "hypervolume", "share of ideal", "reference",
                      "baseline", "not counted"],
                     [[tr.series, len(tr.trials), len(tr.front), f"{tr.hypervolume:.4g}", f"{tr.hypervolume_share:.1%}",
                       f"accuracy 0, {tr.reference[1]:.1f} think tokens ({tr.reference_source})",
                       tr.baseline.name if tr.baseline else "none", skipped.get(tr.series, "")] for tr in tradeoffs])
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>cot-pareto report</title>
<style>{STYLE}</style></head><body>
<h1>cot-pareto: accuracy vs think tokens</h1>
<p>Generated {datetime.now().isoformat(timespec="seconds")} from {", ".join(html.escape(t.series) for t in tradeoffs)}.
Accuracy is the flexible extractor's; think tokens are counted between the think delimiters with the student's
tokenizer. The hypervolume is the area the front dominates up to the reference point.</p>
<h2>Hypervolume</h2>{volumes}
<h2>Pareto front</h2>{pareto_html}{front_table(tradeoffs)}
<h2>Paired comparison against the best point</h2>{paired_section(evidence)}
{f"<h2>Per-task routing</h2>{routing_section(tradeoffs, routings, routing_notes)}" if routings else ""}
<h2>Per level</h2>{levels_html}
<h2>Example outputs</h2>{_examples(tradeoffs, rows_of, examples_per_level)}
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
