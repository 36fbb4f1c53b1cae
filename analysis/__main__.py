# Report: python -m analysis report outputs/search/<study> [another sweep dir or storage ...] [--label A --label B]
#         ... [--route-max-accuracy-drop 0.02]   (per-task routing, where eval samples carry task types)
# Table:  python -m analysis table outputs/demo/<stamp>
# Route:  python -m analysis route outputs/demo/<stamp> --max-accuracy-drop 0.05 | --min-accuracy 0.1
# Check:  python -m analysis check-render outputs/demo/<stamp>/report/report.html
# Choose: python -m analysis choose outputs/demo/<stamp> [--margin 0.02]
#         ... --min-accuracy 0.8 | --max-think-tokens 20 | --max-accuracy-drop 0.05
"""The analysis command line: ``table`` lists the trials, ``report`` writes the Pareto plots and report (per-task
routing included where the eval samples carry task types), ``choose`` recommends a level, ``route`` picks one
setting per task type."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime
from pathlib import Path

from analysis import cli_checks as checks
from analysis.choose import Constraints, choose, format_choice
from analysis.paired_table import DEFAULT_MARGIN
from analysis.report import ROUTE_MAX_ACCURACY_DROP, build_report, format_report
from analysis.tradeoff import tradeoff
from analysis.trials import Collection, is_storage, load_trials, merged
from training.common.errors import CotParetoError


def _sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a sweep dir (or any dir of run dirs), an Optuna journal file, or a storage URL")
    parser.add_argument("--study", help="the study's name in a storage that holds several")


def _margin_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--margin", type=checks.margin, default=DEFAULT_MARGIN,
                        help="non-inferiority margin of the paired tests against the best point, in accuracy "
                             f"(default {DEFAULT_MARGIN}): a point is not significantly worse when its paired "
                             "95 %% CI lower bound for (accuracy - the best's) is >= -margin")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = checks.OneLineParser(prog="python -m analysis", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="Pareto fronts, hypervolume, pareto.png/csv, report.html, W&B")
    _sources(report)
    report.add_argument("--label", action="append", default=[], help="a name per PATH, in order (default: its name)")
    report.add_argument("--out", type=Path, help="where to write (default: PATH/report for one sweep dir, "
                                                  "else outputs/reports/<time>)")
    report.add_argument("--reference-tokens", type=checks.reference_tokens,
                        help="the hypervolume's think-token reference (default: the baseline's, else max_new_tokens)")
    report.add_argument("--wandb", default="auto", choices=("auto", "online", "offline", "disabled"),
                        help="log the report as a W&B run (auto: online with WANDB_API_KEY, else offline)")
    report.add_argument("--wandb-group", help="the W&B group (default: the first series' name, as its trials use)")
    report.add_argument("--route-max-accuracy-drop", type=checks.accuracy_drop, default=ROUTE_MAX_ACCURACY_DROP,
                        help="per-task routing in the report: per type, the cheapest setting at most this much below "
                             f"the type's most accurate one (default {ROUTE_MAX_ACCURACY_DROP}; as route's "
                             "--max-accuracy-drop)")
    _margin_arg(report)
    pick = commands.add_parser("choose", help="recommend the front point that meets constraints (PATHs are merged)")
    _sources(pick)
    pick.add_argument("--min-accuracy", type=checks.accuracy, help="accuracy at least this (0-1)")
    pick.add_argument("--max-think-tokens", type=checks.think_tokens, help="mean think tokens at most this")
    pick.add_argument("--max-accuracy-drop", type=checks.accuracy_drop,
                      help="accuracy at most this much below the baseline's")
    _margin_arg(pick)
    routing = commands.add_parser("route", help="per task type, the setting with the fewest think tokens that "
                                                 "meets a bound, and the routed policy against the best single one")
    _sources(routing)
    bound = routing.add_mutually_exclusive_group(required=True)
    bound.add_argument("--max-accuracy-drop", type=checks.accuracy_drop,
                       help="per type, accuracy at most this much below the type's most accurate setting")
    bound.add_argument("--min-accuracy", type=checks.accuracy, help="per type, accuracy at least this (0-1)")
    routing.add_argument("--margin", type=checks.margin, help="non-inferiority margin of the paired tests "
                         "(default: the accuracy drop, else %s)" % DEFAULT_MARGIN)
    table = commands.add_parser("table", help="one line per trial under DIR: status, accuracy, think tokens, times")
    table.add_argument("dir", type=Path, help="a sweep dir (or any dir of run dirs)")
    render = commands.add_parser("check-render", help="screenshot report.html in headless Chromium, find the plot")
    render.add_argument("page", type=Path, help="a report.html")
    render.add_argument("--screenshot", type=Path, help="where to save the PNG (default: beside the page)")
    return parser.parse_args(argv)


def _collect_all(args: argparse.Namespace, labels: list[str]) -> list[Collection]:
    if labels and len(labels) != len(args.paths):
        raise CotParetoError(f"{len(labels)} --label for {len(args.paths)} paths: give one per path or none")
    return [load_trials(path, args.study, labels[i] if labels else None) for i, path in enumerate(args.paths)]


def _out_dir(args: argparse.Namespace) -> Path:
    if args.out:
        return args.out
    if len(args.paths) == 1 and not is_storage(args.paths[0]):
        return Path(args.paths[0]) / "report"
    return Path("outputs/reports") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def run_report(args: argparse.Namespace) -> int:
    collections = _collect_all(args, args.label)
    report = build_report(collections, _out_dir(args), args.reference_tokens, args.margin,
                          args.route_max_accuracy_drop)
    print(format_report(report))
    from analysis.wandb_report import log_report

    logged = log_report(report, args.wandb_group or collections[0].series, args.wandb)
    if logged:
        print(f"wandb: {logged}")
    return 0


def run_choose(args: argparse.Namespace) -> int:
    collections = _collect_all(args, [])
    both = merged(collections)
    tr = tradeoff(both.series, both.trials)
    choice = choose(tr, Constraints(args.min_accuracy, args.max_think_tokens, args.max_accuracy_drop, args.margin))
    print(f"{both.series}: {len(tr.trials)} completed trials ({both.skipped_text()}), {len(tr.front)} on the front")
    print(format_choice(choice))
    return 0 if choice.point is not None else 1


def run_route(args: argparse.Namespace) -> int:
    from analysis.route import format_routing, route

    both = merged(_collect_all(args, []))
    print(format_routing(route(both.trials, args.max_accuracy_drop, args.min_accuracy, args.margin)))
    return 0


def run_table(args: argparse.Namespace) -> int:
    from analysis.table import format_table, table_rows

    print(format_table(table_rows(args.dir)))
    return 0


def run_check_render(args: argparse.Namespace) -> int:
    from analysis.render_check import check_render

    found = check_render(args.page, args.screenshot)
    markers = found.pop("markers")
    print(f"plot drawn: {markers} trial markers in the Pareto plot's SVG; pixels per level colour in the screenshot "
          f"{found} ({args.screenshot or args.page.with_name('report_screenshot.png')})")
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        commands = {"report": run_report, "choose": run_choose, "table": run_table, "route": run_route,
                    "check-render": run_check_render}
        return commands[args.command](args)
    except CotParetoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
