"""The report with no-think twins, baselines both ways and per-task routing, on hand-made run dirs.

The sweep: an L4 adapter and its no-think twin (``L4/no_think``), and the base model with the L4 prompt
thinking on and off (``base``, ``base/no_think``), 80 shared problems of two task types. Per setting the
right answers per type are chosen so that the routing is known: within 0.05 of each type's best,
type A's cheapest setting is L4 no-think (37 of 40 at 1 think token) and type B's the no-think base
model (37 of 40 at 2), so the routed policy scores 74/80 at (40 x 1 + 40 x 2) / 80 = 1.5 think tokens.
"""

import json

import matplotlib.pyplot as plt
import pytest

from analysis import plots
from analysis.__main__ import main
from analysis.choose import Constraints, choose
from analysis.paired_table import paired_evidence
from analysis.plots import NO_THINK_LABEL, NOT_WORSE_COLOR, ROUTED_LABEL
from analysis.report import build_report
from analysis.scatter import pareto_figure
from analysis.tradeoff import pick_baseline, tradeoff
from analysis.trials import load_trials
from tests.run_dirs import demo_like_sweep, sample, write_run_dir

TYPES = (("A", 40), ("B", 40))
# name in the sweep -> (level, adapter, thinking, think tokens, right answers on A, on B)
SETTINGS = {"L4": (4, "auto", None, 10, 38, 30), "L4/no_think": (4, "auto", "off", 1, 37, 25),
            "base": (4, "none", None, 30, 36, 38), "base/no_think": (4, "none", "off", 2, 20, 37)}


def typed_rows(think: int, right: tuple[int, ...]) -> list[dict]:
    rows = []
    for (task_type, n), k in zip(TYPES, right):
        for i in range(n):
            rows.append({**sample(i < k, think, problem=f"{task_type}{i:02d}"), "task_type": task_type})
    return rows


def both_ways_sweep(root):
    for name, (level, adapter, thinking, think, *right) in SETTINGS.items():
        rows = typed_rows(think, tuple(right))
        write_run_dir(root, name, level, sum(r["correct"] for r in rows) / len(rows), float(think), adapter=adapter,
                      n_eval=len(rows), samples=rows, thinking=thinking)
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return both_ways_sweep(tmp_path_factory.mktemp("both") / "sweep")


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    return build_report([load_trials(str(sweep))], tmp_path_factory.mktemp("report"), route_max_accuracy_drop=0.05)


def test_the_thinking_base_is_the_baseline_and_the_no_think_one_another(sweep):
    collection = load_trials(str(sweep))
    by_name = {t.name: t for t in collection.trials}
    assert {name: t.label for name, t in by_name.items()} == {
        "L4": "L4", "L4/no_think": "L4 no-think", "base": "base (L4 prompt)",
        "base/no_think": "base (L4 prompt) no-think"}
    tr = tradeoff(collection.series, collection.trials)
    assert tr.baseline is by_name["base"] and tr.other_baselines == [by_name["base/no_think"]]
    assert [t.name for t in tr.trials] == ["L4", "L4/no_think"]
    # Both adapters are on the front: the no-think one at 1 think token, L4 at 10 and more accurate.
    assert [p.trial.name for p in tr.front] == ["L4/no_think", "L4"]
    assert tr.reference == (0.0, 30.0) and tr.front[0].token_saving == pytest.approx(1 - 1 / 30)
    # choose is unaffected: a baseline is never recommended, and --max-accuracy-drop is against the thinking base.
    choice = choose(tr, Constraints(max_accuracy_drop=0.1))  # floor 74/80 - 0.1 = 0.825: L4 (68/80)
    assert choice.point.trial.name == "L4" and "baseline 0.925" in choice.rule


def test_a_thinking_base_wins_even_when_the_no_think_one_thinks_longer(tmp_path):
    write_run_dir(tmp_path, "on", 1, 0.5, 5.0, adapter="none")
    write_run_dir(tmp_path, "off", 1, 0.4, 8.0, adapter="none", thinking="off")
    trials = load_trials(str(tmp_path)).trials
    assert pick_baseline(trials).name == "on"
    assert pick_baseline([t for t in trials if t.no_think]).name == "off"  # no thinking base: the other one


def test_report_json_holds_both_baselines_and_the_known_routing(report):
    summary = json.loads((report.out_dir / "report.json").read_text())["series"][0]
    assert summary["baseline"]["trial"] == "base" and summary["baseline"]["thinking"] == "on"
    assert [(b["trial"], b["label"], b["thinking"]) for b in summary["other_baselines"]] == [
        ("base/no_think", "base (L4 prompt) no-think", "off")]
    assert summary["routing_note"] is None
    routing = summary["routing"]
    assert {r["task_type"]: (r["setting"], r["best"], r["n"]) for r in routing["routes"]} == {
        "A": ("L4 no-think", "L4", 40), "B": ("base (L4 prompt) no-think", "base (L4 prompt)", 40)}
    a = next(r for r in routing["routes"] if r["task_type"] == "A")
    assert (a["accuracy"], a["mean_think_tokens"], a["delta_accuracy"]) == (37 / 40, 1.0, pytest.approx(-1 / 40))
    assert a["decision"].startswith("-0.025 [")
    assert routing["routed"] == {"n": 80, "accuracy": pytest.approx(74 / 80), "mean_think_tokens": pytest.approx(1.5)}
    assert routing["single"]["setting"] == "base (L4 prompt)" and routing["single"]["accuracy"] == 74 / 80
    assert routing["routed_vs_single"]["delta_accuracy"] == 0.0
    # Beside the in-sample figures, the cross-fitted estimate: chosen on one half of each type, scored on the other.
    crossfit = routing["crossfit"]
    assert crossfit["computed"] and (crossfit["folds"], crossfit["n"]) == (2, 80)
    assert [fold["n"] for fold in crossfit["per_fold"]] == [40, 40]
    assert set(crossfit["routed_vs_single"]) >= {"delta_accuracy", "ci_low", "ci_high", "mcnemar_p"}
    assert crossfit["text"].startswith("cross-fitted (2 folds: choose on one half, score on the other")
    trials_csv = (report.out_dir / "trials.csv").read_text()
    assert "L4/no_think" in trials_csv and ",off," in trials_csv


def test_html_draws_no_think_points_other_baselines_and_the_routed_policy(report):
    page = (report.out_dir / "report.html").read_text()
    assert NO_THINK_LABEL in page and ROUTED_LABEL in page and "Per-task routing" in page
    assert "L4 no-think" in page and "base (L4 prompt) no-think" in page
    assert "routed policy on 80 problems: accuracy 0.925, think tokens 1.5" in page
    fig = pareto_figure(report.tradeoffs, report.evidence, report.routings)
    traces = {trace.name: trace for trace in fig.data}
    routed = traces[ROUTED_LABEL]
    assert (list(routed.x), list(routed.y), routed.marker.symbol) == ([1.5], [pytest.approx(74 / 80)], "x")
    no_think = [trace for trace in fig.data if trace.legendgroup == "no-think"]
    assert [list(trace.text) for trace in no_think] == [["L4 no-think"]]  # on the front, one legend entry
    assert no_think[0].marker.symbol == "circle-open" and no_think[0].showlegend
    others = next(trace for name, trace in traces.items() if name.endswith("base model, other runs (no adapter)"))
    assert list(others.text) == ["base (L4 prompt) no-think"] and others.marker.symbol == "star-open"
    # An open symbol is drawn in its own colour: a ringed no-think point gets its ring as a trace of its own.
    loose = pareto_figure(report.tradeoffs, [paired_evidence(report.tradeoffs[0], margin=0.2)])
    rings = [trace for trace in loose.data if trace.marker.color == NOT_WORSE_COLOR and trace.x != (None,)]
    assert [(list(r.x), list(r.y)) for r in rings] == [([1.0], [pytest.approx(0.775)])]


def test_pareto_png_has_hollow_no_think_points_and_the_routed_x(report, tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    path = plots.plot_pareto(report.tradeoffs, tmp_path / "pareto.png", evidence=report.evidence,
                             routings=report.routings)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = figures[0].axes[0]
    hollow = [(line.get_xdata()[0], line.get_markeredgecolor()) for line in ax.lines
              if line.get_marker() == "o" and line.get_markerfacecolor() == "none"]
    assert hollow == [(1.0, plots.level_color(4))]  # L4 no-think, edged in level 4's colour
    texts = {text.get_text() for text in ax.texts}
    assert {"L4", "L4 no-think", "base", "base (L4 prompt) no-think", "routed"} <= texts
    points = [tuple(c.get_offsets()[0]) for c in ax.collections if c.get_offsets().shape == (1, 2)]
    assert points.count((1.5, 0.925)) == 1  # the routed X
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert NO_THINK_LABEL in legend and ROUTED_LABEL in legend and "base model, other runs (no adapter)" in legend
    plt.close(figures[0])


def test_report_cli_prints_routing_and_validates_its_bound(sweep, tmp_path, capsys):
    assert main(["report", str(sweep), "--out", str(tmp_path), "--wandb", "disabled",
                 "--route-max-accuracy-drop", "0.05"]) == 0
    out = capsys.readouterr().out
    assert ("routing per task type (at most 0.05 accuracy below the type's most accurate setting): routed policy on "
            "80 problems: accuracy 0.925, think tokens 1.5; best single setting base (L4 prompt)") in out
    assert "also base (L4 prompt) no-think base/no_think: accuracy 0.713, 2.0 think tokens" in out
    for bad in ("1.5", "nan", "-0.1"):
        with pytest.raises(SystemExit):
            main(["report", str(sweep), "--route-max-accuracy-drop", bad])
        assert "expected an accuracy difference" in capsys.readouterr().err


def test_without_task_types_routing_is_null_with_the_reason(tmp_path, capsys):
    sweep = demo_like_sweep(tmp_path / "sweep")
    assert main(["report", str(sweep), "--out", str(tmp_path / "out"), "--wandb", "disabled"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "routing" in line]
    assert len(lines) == 1 and lines[0].startswith("  routing per task type not computed: no trial has per-problem")
    assert "eval_samples.jsonl row 1 has no task_type" in lines[0] and lines[0].count("no task_type") == 1
    summary = json.loads((tmp_path / "out" / "report.json").read_text())["series"][0]
    assert summary["routing"] is None and "no task_type" in summary["routing_note"]
    assert summary["other_baselines"] == [] and summary["hypervolume"] == pytest.approx(22.4)  # the rest as before
    page = (tmp_path / "out" / "report.html").read_text()
    assert "routing not computed: no trial has per-problem results" in page and ROUTED_LABEL not in page


def test_one_typed_setting_is_too_few_to_route(tmp_path):
    rows = typed_rows(3, (30, 30))
    write_run_dir(tmp_path, "L2", 2, 0.75, 3.0, n_eval=len(rows), samples=rows)
    report = build_report([load_trials(str(tmp_path))], tmp_path / "out")
    assert report.routings == [None]
    assert report.routing_notes[0].startswith("only one setting (L2) has per-problem results with task types")
