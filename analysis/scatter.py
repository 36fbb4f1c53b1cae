"""The interactive Pareto scatter of ``report.html`` and the W&B report (plotly).

It draws what ``pareto.png`` draws, one figure for all series: each series' trials (dominated ones
faded, the front as a step line), colours by level and symbols by series. No-think trials are open
symbols in traces of their own with one legend entry, "no-think (eval.thinking=off)", that shows or
hides them all; the baseline is a black star, the other no-adapter runs open stars, and the routed
policy of per-task routing a black X. Hovering a point shows its settings.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go

from analysis.paired_table import PairedEvidence
from analysis.plots import (
    BASELINE_COLOR,
    DOMINATED_ALPHA,
    NO_THINK_LABEL,
    NOT_WORSE_COLOR,
    OTHER_BASELINES_LABEL,
    ROUTED_LABEL,
    not_worse_label,
    trial_color,
)
from analysis.route import Routing, routing_line
from analysis.route_crossfit import crossfit_line
from analysis.tradeoff import Tradeoff
from analysis.trials import Trial

SYMBOLS = ("circle", "square", "triangle-up", "diamond", "triangle-down", "cross")
DASHES = ("solid", "dash", "dot", "dashdot")


def _hover(trial: Trial) -> str:
    params = "<br>".join(f"{html.escape(k)}={html.escape(v)}" for k, v in sorted(trial.params.items()))
    return (f"<b>{html.escape(trial.label)}</b> {html.escape(trial.name)} ({html.escape(trial.series)})<br>"
            f"accuracy {trial.accuracy:.3f} [{trial.accuracy_ci[0]:.3f}, {trial.accuracy_ci[1]:.3f}]<br>"
            f"think tokens {trial.mean_think_tokens:.1f}<br>{params}")


def _trial_trace(trials: Sequence[Trial], name: str, symbol: str, opacity: float, front: bool,
                 ringed: frozenset[int] = frozenset(), hollow: bool = False) -> go.Scatter:
    # The ring of a point not significantly worse than the best is its marker's outline: no extra SVG points.
    # An open symbol is drawn in its marker colour alone, so a hollow point's ring is a trace of its own.
    outline = [NOT_WORSE_COLOR if id(t) in ringed and not hollow else "black" for t in trials]
    widths = [2 if hollow else (3 if id(t) in ringed else (1.5 if front else 0)) for t in trials]
    sizes = [16 if id(t) in ringed else (11 if front else 9) for t in trials]
    return go.Scatter(
        x=[t.mean_think_tokens for t in trials], y=[t.accuracy for t in trials], mode="markers+text", name=name,
        text=[t.label for t in trials], textposition="top right", hovertext=[_hover(t) for t in trials],
        hoverinfo="text", opacity=opacity, legendgroup="no-think" if hollow else None,
        error_y={"type": "data", "symmetric": False, "array": [t.accuracy_ci[1] - t.accuracy for t in trials],
                 "arrayminus": [t.accuracy - t.accuracy_ci[0] for t in trials], "thickness": 1},
        # An array of sizes makes plotly draw a "bubble" trace at opacity 0.7 unless told otherwise.
        marker={"symbol": f"{symbol}-open" if hollow else symbol, "size": sizes, "opacity": 1.0,
                "color": [trial_color(t) for t in trials], "line": {"width": widths, "color": outline}})


def _points(fig: go.Figure, tr: Tradeoff, symbol: str, ringed: frozenset[int]) -> None:
    """The series' trials: dominated (faded) and front, thinking on (filled) and off (open, one legend entry)."""
    on_front = {id(p.trial) for p in tr.front}
    for hollow in (False, True):
        dominated = [t for t in tr.trials if id(t) not in on_front and t.no_think == hollow]
        front = [p.trial for p in tr.front if p.trial.no_think == hollow]
        if not hollow:
            fig.add_trace(_trial_trace(dominated, f"{tr.series}: dominated", symbol, DOMINATED_ALPHA, front=False))
            fig.add_trace(_trial_trace(front, f"{tr.series}: front", symbol, 1.0, front=True, ringed=ringed))
            continue
        for trials, opacity in ((dominated, DOMINATED_ALPHA), (front, 1.0)):
            if trials:
                first = not any(trace.legendgroup == "no-think" for trace in fig.data)
                fig.add_trace(_trial_trace(trials, NO_THINK_LABEL, symbol, opacity, front=opacity == 1.0,
                                           ringed=ringed, hollow=True).update(showlegend=first))
        rings = [t for t in front if id(t) in ringed]
        if rings:
            fig.add_trace(go.Scatter(x=[t.mean_think_tokens for t in rings], y=[t.accuracy for t in rings],
                                     mode="markers", hoverinfo="skip", showlegend=False,
                                     marker={"symbol": "circle-open", "size": 22, "color": NOT_WORSE_COLOR,
                                             "line": {"width": 3}}))


def _others_and_routed(fig: go.Figure, tr: Tradeoff, routing: Routing | None, prefix: str) -> None:
    others = tr.other_baselines
    if others:
        fig.add_trace(go.Scatter(x=[t.mean_think_tokens for t in others], y=[t.accuracy for t in others],
                                 mode="markers+text", text=[t.label for t in others], textposition="bottom right",
                                 name=f"{tr.series}: {OTHER_BASELINES_LABEL}", hovertext=[_hover(t) for t in others],
                                 hoverinfo="text", marker={"symbol": "star-open", "size": 16, "color": BASELINE_COLOR,
                                                           "line": {"width": 2}}))
    if routing is not None:
        fig.add_trace(go.Scatter(x=[routing.think_tokens], y=[routing.accuracy], mode="markers+text",
                                 text=["routed"], textposition="top left", name=f"{prefix}{ROUTED_LABEL}",
                                 hovertext=[html.escape(routing_line(routing)) + "<br>"
                                            + html.escape(crossfit_line(routing.crossfit))],
                                 hoverinfo="text",
                                 marker={"symbol": "x", "size": 15, "color": "black"}))


def pareto_figure(tradeoffs: Sequence[Tradeoff], evidence: Sequence[PairedEvidence] = (),
                  routings: Sequence[Routing | None] = ()) -> go.Figure:
    """The scatter; ``routings`` (one per tradeoff, None where not computed) adds each routed policy."""
    fig = go.Figure()
    ringed = frozenset(id(r.trial) for ev in evidence for r in ev.rows if r.role != "baseline" and r.not_worse)
    routings = list(routings) + [None] * (len(tradeoffs) - len(routings))
    for index, (tr, routing) in enumerate(zip(tradeoffs, routings)):
        symbol, dash = SYMBOLS[index % len(SYMBOLS)], DASHES[index % len(DASHES)]
        _points(fig, tr, symbol, ringed)
        points = sorted((p.trial.mean_think_tokens, p.trial.accuracy) for p in tr.front)
        fig.add_trace(go.Scatter(x=[x for x, _ in points], y=[y for _, y in points], mode="lines",
                                 line={"shape": "hv", "color": "black", "dash": dash, "width": 1.5},
                                 name=f"{tr.series}: front line", hoverinfo="skip"))
        if tr.baseline is not None:
            fig.add_trace(go.Scatter(x=[tr.baseline.mean_think_tokens], y=[tr.baseline.accuracy],
                                     mode="markers+text", text=["base"], textposition="bottom right",
                                     name=f"{tr.series}: base model", hovertext=[_hover(tr.baseline)],
                                     hoverinfo="text",
                                     marker={"symbol": "star", "size": 16, "color": BASELINE_COLOR}))
        _others_and_routed(fig, tr, routing, f"{tr.series}: " if len(tradeoffs) > 1 else "")
    if ringed:  # a legend entry only: no data, so no marker is drawn
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=not_worse_label(evidence),
                                 marker={"symbol": "circle-open", "size": 12, "color": NOT_WORSE_COLOR,
                                         "line": {"width": 3}}))
    fig.update_layout(title="Accuracy vs mean think tokens (hover a point for its settings)",
                      xaxis_title="mean think tokens per problem", yaxis_title="accuracy (95 % Wilson CI)",
                      template="plotly_white", height=560, legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(rangemode="tozero")
    fig.update_yaxes(rangemode="tozero")
    return fig
