"""python bench/trial_path.py [--repo DIR]

(options: ``--out FILE`` also writes the report as JSON; ``--set KEY=VALUE`` adds a Hydra override.)

Which of the repo's code one trial runs through, and how often it crosses between packages.

One tiny trial (traces -> filter -> train -> eval on the locally built tiny Qwen3, the smallest full
trial the tests run: 4 train and 4 eval problems, one batch of 4, 8 new tokens, CPU) runs in this
process under ``sys.setprofile`` (and ``threading.setprofile`` for threads it starts), with W&B and
the stage cache off so every stage really runs. Only ``sweep.pipeline.run_pipeline(cfg, run_dir)``
is profiled: composing the config and importing the pipeline happen before. Printed:

1. files entered: the repo source files (under sweep/, training/, analysis/, hydra_plugins/ of the
   measured repo) in which at least one function (not a module or class body) was called;
2. package crossings: distinct (caller function -> callee function) call edges whose two ends lie in
   different top-level packages (training/teachers/x.py counts as "training"), the raw number of such
   call events, and per file the distinct call edges that enter it from another repo file;
3. metric-name lists: list/tuple/set literals in those packages holding at least 3 of the headline
   metric names, by file:line (an AST scan, no import).

A call edge is the immediate Python caller frame -> the called frame ('call' events, so a generator
resumed again counts again as an event, not as a new edge). A comprehension or generator expression is
part of the function it is written in (as Python 3.12 inlines comprehensions): its calls are that
function's, and running it is no call. Lambdas are functions (labelled ``<lambda>@line``). Calls that reach repo code through
library code (a Trainer callback, a Hydra instantiation) have a library caller; they are reported
apart, as "via library" edges from the nearest repo frame below them.

``--repo DIR`` measures another checkout: DIR goes first on ``sys.path`` and becomes the working
directory before anything of the project is imported (``run_pipeline`` is looked up by its import
name, ``sweep.pipeline``), and the report checks that every loaded project module came from DIR.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

PACKAGES = ("sweep", "training", "analysis", "hydra_plugins")
METRIC_NAMES = frozenset({
    "accuracy", "accuracy_ci", "accuracy_strict", "mean_think_tokens", "median_think_tokens",
    "mean_completion_tokens", "format_error_rate", "n_eval", "eval_seconds", "eval_tokens_per_second",
})
# The smallest full trial the tests run (tests/test_sweeps.py grid, tests/test_distributed.py sizes), in one
# CPU process, with W&B and the stage cache off.
OVERRIDES = (
    "+level=4", "model=tiny-qwen3", "hardware=cpu", "data.n_train=4", "data.n_eval=4", "train.batch_size=4",
    "sampling.max_new_tokens=8", "wandb.mode=disabled", "cache.enabled=false",
)
COMPREHENSIONS = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})
CO_OPTIMIZED = 0x1  # set on function code (incl. lambdas, comprehensions), not on module or class bodies


# ---------------------------------------------------------------------------------------------- profiling

class Tracer:
    """Counts 'call' events into repo code by (caller code, callee code)."""

    def __init__(self, root: Path, packages: tuple[str, ...]):
        self.root = os.path.realpath(root)
        self.packages = frozenset(packages)
        self.by_filename: dict[str, str | None] = {}
        self.by_code: dict = {}  # code -> repo-relative path, or None (kept alive: ids stay unique)
        self.edges: Counter = Counter()  # (caller code | None, callee code) -> events, callee in the repo
        self.via_library: Counter = Counter()  # (nearest repo caller code | None, callee code) -> events

    def relpath(self, filename: str) -> str | None:
        if filename in self.by_filename:
            return self.by_filename[filename]
        rel = None
        if filename and not filename.startswith("<"):
            path = os.path.realpath(filename)
            if path.startswith(self.root + os.sep):
                candidate = os.path.relpath(path, self.root).replace(os.sep, "/")
                if candidate.split("/", 1)[0] in self.packages and candidate.endswith(".py"):
                    rel = candidate
        self.by_filename[filename] = rel
        return rel

    def classify(self, code) -> str | None:
        rel = self.relpath(code.co_filename)
        self.by_code[code] = rel
        return rel

    def make_profiler(self):
        by_code, classify, edges, via = self.by_code, self.classify, self.edges, self.via_library

        def profile(frame, event, arg):
            if event != "call":
                return
            code = frame.f_code
            rel = by_code[code] if code in by_code else classify(code)
            if rel is None:
                return
            back = frame.f_back
            caller = back.f_code if back is not None else None
            edges[caller, code] += 1
            if caller is not None and (by_code[caller] if caller in by_code else classify(caller)) is None:
                # reached through library code: attribute to the nearest repo frame below
                up = back.f_back
                while up is not None:
                    c = up.f_code
                    if (by_code[c] if c in by_code else classify(c)) is not None:
                        break
                    up = up.f_back
                via[(up.f_code if up is not None else None), code] += 1

        return profile


def function_id(code, rel: str) -> tuple[str, str, int]:
    return rel, getattr(code, "co_qualname", code.co_name), code.co_firstlineno


def enclosing_map(codes) -> dict:
    """Comprehension / generator-expression code -> the code it is written in (through co_consts)."""
    parent, todo, seen = {}, list(codes), set()
    while todo:
        code = todo.pop()
        if code in seen:
            continue
        seen.add(code)
        for const in code.co_consts:
            if hasattr(const, "co_code"):
                parent.setdefault(const, code)
                todo.append(const)
    return parent


def lexical(code, parent: dict):
    """A comprehension's or genexpr's frame is part of the function it is written in (3.12 inlines them)."""
    while code is not None and code.co_name in COMPREHENSIONS and code in parent:
        code = parent[code]
    return code


def kind(code) -> str:
    if code.co_name == "<module>":
        return "module"
    return "function" if code.co_flags & CO_OPTIMIZED else "class body"


def top_package(rel: str) -> str:
    return rel.split("/", 1)[0]


def label(fid: tuple[str, str, int]) -> str:
    return f"{fid[0]}:{fid[1]}" + (f"@{fid[2]}" if "<lambda>" in fid[1] else "")


def external_label(code) -> str:
    if code is None:
        return "<no caller>"
    return f"{code.co_filename}:{getattr(code, 'co_qualname', code.co_name)}"


def analyse(tracer: Tracer) -> dict:
    rel_of = tracer.by_code
    parent = enclosing_map([code for code, rel in rel_of.items() if rel is not None])
    called_functions: dict[str, set] = defaultdict(set)
    events_per_file: Counter = Counter()
    module_bodies: set[str] = set()
    repo_edges: Counter = Counter()  # (caller fid, callee fid) -> events, both in the repo
    external_edges: Counter = Counter()  # (external caller label, callee fid) -> events
    folded: Counter = Counter()
    for (caller, callee), n in tracer.edges.items():
        if callee.co_name in COMPREHENSIONS:  # running (or resuming) a comprehension is no call
            continue
        if caller is not None and rel_of.get(caller) is not None:
            caller = lexical(caller, parent)
        if caller is not callee:
            folded[caller, callee] += n
    for (caller, callee), n in folded.items():
        callee_rel = rel_of[callee]
        callee_id = function_id(callee, callee_rel)
        events_per_file[callee_rel] += n
        if kind(callee) == "function":
            called_functions[callee_rel].add(callee_id)
        elif kind(callee) == "module":
            module_bodies.add(callee_rel)
        caller_rel = rel_of.get(caller) if caller is not None else None
        if caller_rel is None:
            external_edges[external_label(caller), callee_id] += n
        else:
            repo_edges[function_id(caller, caller_rel), callee_id] += n

    crossing = {edge: n for edge, n in repo_edges.items() if top_package(edge[0][0]) != top_package(edge[1][0])}
    by_pair: Counter = Counter()
    for (a, b) in crossing:
        by_pair[f"{top_package(a[0])} -> {top_package(b[0])}"] += 1

    via: Counter = Counter()
    for (caller, callee), n in tracer.via_library.items():
        if caller is None:
            continue
        if callee.co_name in COMPREHENSIONS:
            continue
        caller = lexical(caller, parent)
        a, b = function_id(caller, rel_of[caller]), function_id(callee, rel_of[callee])
        via[a, b] += n
    via_crossing = {edge: n for edge, n in via.items() if top_package(edge[0][0]) != top_package(edge[1][0])}

    files = sorted(called_functions)
    table = []
    for rel in sorted(set(events_per_file) | module_bodies):
        from_other = {e for e in repo_edges if e[1][0] == rel and e[0][0] != rel}
        from_other_pkg = {e for e in from_other if top_package(e[0][0]) != top_package(rel)}
        from_library = {e for e in external_edges if e[1][0] == rel}
        table.append({
            "file": rel,
            "edges_in_from_other_files": len(from_other),
            "edges_in_from_other_packages": len(from_other_pkg),
            "edges_in_from_outside_repo": len(from_library),
            "functions_called": len(called_functions.get(rel, ())),
            "call_events": events_per_file[rel],
        })
    table.sort(key=lambda row: (-row["edges_in_from_other_files"], -row["functions_called"], row["file"]))

    return {
        "files_entered": {"count": len(files), "files": files},
        "module_bodies_run_during_trial": sorted(module_bodies),
        "functions_called": sum(len(v) for v in called_functions.values()),
        "repo_call_edges": {"distinct": len(repo_edges), "events": sum(repo_edges.values())},
        "package_crossings": {
            "distinct_edges": len(crossing),
            "raw_events": sum(crossing.values()),
            "by_package_pair": dict(sorted(by_pair.items())),
            "edges": [{"caller": label(a), "callee": label(b), "events": n}
                      for (a, b), n in sorted(crossing.items(), key=lambda kv: (-kv[1], label(kv[0][0])))],
        },
        "via_library_crossings": {
            "distinct_edges": len(via_crossing),
            "raw_events": sum(via_crossing.values()),
            "edges": [{"caller": label(a), "callee": label(b), "events": n}
                      for (a, b), n in sorted(via_crossing.items(), key=lambda kv: (-kv[1], label(kv[0][0])))],
        },
        "entries_per_file": table,
    }


# ---------------------------------------------------------------------------------------------- AST scan

def metric_lists(root: Path, packages: tuple[str, ...]) -> list[dict]:
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            try:
                tree = ast.parse(path.read_text(), filename=rel)
            except SyntaxError as err:
                found.append({"location": f"{rel}:{err.lineno}", "error": f"syntax error: {err.msg}"})
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
                    names = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in METRIC_NAMES]
                    if len(set(names)) >= 3:
                        found.append({"location": f"{rel}:{node.lineno}", "kind": type(node).__name__.lower(),
                                      "metric_names": len(set(names)), "elements": len(node.elts)})
    return found


# ---------------------------------------------------------------------------------------------- the trial

def git_head(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=False, capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return out.stdout.strip() or None


def foreign_modules(root: Path, packages: tuple[str, ...]) -> list[str]:
    """Loaded project modules whose file is not under ``root`` (e.g. the editable install's checkout).

    Installed distributions that share the ``hydra_plugins`` namespace (Hydra's joblib launcher) are not
    the project's: a module under site-packages that ``root`` has no file for is left out.
    """
    real = os.path.realpath(root) + os.sep
    bad = []
    for name, module in list(sys.modules.items()):
        if name.split(".", 1)[0] not in packages:
            continue
        file = getattr(module, "__file__", None)
        if not file or os.path.realpath(file).startswith(real):
            continue
        base = root.joinpath(*name.split("."))
        in_repo = base.with_suffix(".py").exists() or (base / "__init__.py").exists()
        installed = any(part in ("site-packages", "dist-packages") for part in Path(file).parts)
        if in_repo or not installed:
            bad.append(f"{name}: {file}")
    return sorted(bad)


def run_trial(root: Path, overrides: list[str], tracer: Tracer) -> dict:
    import importlib

    compose_config = importlib.import_module("sweep.cli").compose_config
    pipeline = importlib.import_module("sweep.pipeline")
    cfg = compose_config(*overrides)
    profile = tracer.make_profiler()
    with tempfile.TemporaryDirectory(prefix="trial-path-") as tmp:
        run_dir = Path(tmp) / "run"
        status, error = "completed", None
        start = time.perf_counter()
        threading.setprofile(profile)
        sys.setprofile(profile)
        try:
            summary = pipeline.run_pipeline(cfg, run_dir)
            status = summary.get("status", status) if isinstance(summary, dict) else status
        except BaseException as err:  # noqa: BLE001 - the partial path is still worth reporting
            status, error = "failed", f"{type(err).__name__}: {err}"
            summary = None
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
        seconds = time.perf_counter() - start
    stages = summary.get("stages") if isinstance(summary, dict) else None
    return {"pipeline_file": pipeline.__file__, "status": status, "error": error, "stages": stages,
            "profiled_seconds": round(seconds, 2)}


def print_report(report: dict, top: int) -> None:
    t, r = report["trial"], report["result"]
    print(f"repo {report['repo']} (HEAD {report['git_head']}); sweep.pipeline from {t['pipeline_file']}")
    print(f"trial: {t['status']}, stages {t['stages']}, {t['profiled_seconds']} s profiled, "
          f"{report['wall_seconds']} s in all" + (f" -- {t['error']}" if t["error"] else ""))
    if report["foreign_modules"]:
        print(f"WARNING: {len(report['foreign_modules'])} project modules loaded from outside the repo:")
        for line in report["foreign_modules"]:
            print(f"  {line}")
    files = r["files_entered"]
    print(f"\n1. files entered: {files['count']} ({r['functions_called']} distinct functions called)")
    for rel in files["files"]:
        print(f"   {rel}")
    if r["module_bodies_run_during_trial"]:
        print(f"   module bodies run (imported) during the trial: {', '.join(r['module_bodies_run_during_trial'])}")
    pc = r["package_crossings"]
    print(f"\n2. package crossings: {pc['distinct_edges']} distinct call edges, {pc['raw_events']} raw crossing call events "
          f"(of {r['repo_call_edges']['distinct']} repo->repo edges, {r['repo_call_edges']['events']} events)")
    for pair, n in pc["by_package_pair"].items():
        print(f"   {pair}: {n} edges")
    for edge in pc["edges"][:top]:
        print(f"   {edge['events']:>7}  {edge['caller']} -> {edge['callee']}")
    if len(pc["edges"]) > top:
        print(f"   ... {len(pc['edges']) - top} more (--top, or the JSON)")
    vl = r["via_library_crossings"]
    print(f"   via library code (nearest repo frame -> repo callee, other package; not counted above): "
          f"{vl['distinct_edges']} edges, {vl['raw_events']} events")
    for edge in vl["edges"][:top]:
        print(f"   {edge['events']:>7}  {edge['caller']} ~> {edge['callee']}")
    print("\n   entries per file: edges in from other repo files (of them from other packages), from outside the repo, "
          "functions called, call events")
    for row in r["entries_per_file"][:top]:
        print(f"   {row['edges_in_from_other_files']:>4} ({row['edges_in_from_other_packages']:>3}) "
              f"{row['edges_in_from_outside_repo']:>4} {row['functions_called']:>5} {row['call_events']:>9}  {row['file']}")
    if len(r["entries_per_file"]) > top:
        print(f"   ... {len(r['entries_per_file']) - top} more files")
    ml = report["metric_lists"]
    print(f"\n3. metric-name lists (>= 3 of the {len(METRIC_NAMES)} names): {len(ml)}")
    for item in ml:
        extra = item.get("error") or f"{item['kind']}, {item['metric_names']} names of {item['elements']} elements"
        print(f"   {item['location']}  ({extra})")


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repo", type=Path, default=here, help="checkout to measure (default: this one)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra Hydra override, after the defaults")
    parser.add_argument("--top", type=int, default=25, help="rows printed per table (default 25)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    root = args.repo.resolve()
    out = args.out.resolve() if args.out else None
    if not (root / "sweep").is_dir():
        parser.error(f"{root} has no sweep/ package")
    sys.path.insert(0, str(root))
    os.chdir(root)
    overrides = [*OVERRIDES, *args.extra]

    metrics = metric_lists(root, PACKAGES)
    tracer = Tracer(root, PACKAGES)
    trial = run_trial(root, overrides, tracer)
    report = {
        "repo": str(root),
        "git_head": git_head(root),
        "python": sys.version.split()[0],
        "overrides": overrides,
        "trial": trial,
        "foreign_modules": foreign_modules(root, PACKAGES),
        "result": analyse(tracer),
        "metric_lists": metrics,
    }
    report["wall_seconds"] = round(time.perf_counter() - start, 2)
    print_report(report, args.top)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nJSON: {out}")
    return 0 if trial["status"] == "completed" and not report["foreign_modules"] else 1


if __name__ == "__main__":
    sys.exit(main())
