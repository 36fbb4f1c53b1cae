"""Read finished trials from sweep dirs (their run dirs' files) or an Optuna storage, into one table.

Analysis never touches objects in memory: a run dir's ``metrics.json``, ``.hydra/config.yaml``
and ``.hydra/overrides.yaml`` say everything about a trial; a study's trials carry their run
dir and metrics as user attributes. Failed and unfinished trials are left out and counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sweep.cli import override_key
from sweep.run_record import METRICS_FILE, NO_THINK_DIR, UNREADABLE, read_metrics
from sweep.search.storage import redact
from sweep.trial_record import TrialRecord
from training.common.errors import CotParetoError

# Overrides that say how a trial ran, not what it tried: not shown as its parameters.
_NOT_PARAMS = ("search", "hardware.num_threads", "hardware.concurrent_trials", "hydra.", "wandb.")


@dataclass(frozen=True)
class Trial:
    """One completed trial: what it tried and what it scored."""

    series: str
    name: str
    run_dir: Path | None
    level: int | None
    baseline: bool
    params: dict[str, str]
    accuracy: float
    accuracy_ci: tuple[float, float]
    mean_think_tokens: float
    mean_completion_tokens: float | None
    seconds_per_problem: float | None
    n_eval: int | None
    n_train: int | None
    max_new_tokens: int | None
    model: str | None
    data: str | None
    accuracy_extractor: str = "flexible"  # which eval_samples.jsonl flag ``accuracy`` counts
    thinking: str = "on"  # "off": evaluated in no-think mode (eval.thinking), its own series in plots
    latent: bool = False  # the latent level (level.latent): reasons in reserved symbols, named "latent", not L<id>

    @property
    def no_think(self) -> bool:
        return self.thinking == "off"

    @property
    def level_tag(self) -> str:
        """``L4``, or ``latent`` for the latent level (as :attr:`training.data.levels.Level.tag` names it)."""
        return "latent" if self.latent else f"L{self.level}"

    @property
    def point(self) -> tuple[float, float]:
        return (self.accuracy, self.mean_think_tokens)

    @property
    def label(self) -> str:
        name = f"base ({self.level_tag} prompt)" if self.baseline else self.level_tag
        return f"{name} no-think" if self.no_think else name


@dataclass
class Collection:
    """The trials of one series (a sweep dir, a study, or several merged) and what was skipped."""

    series: str
    trials: list[Trial] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason ("failed", "incomplete", "repeat") -> count
    unreadable: list[str] = field(default_factory=list)  # "<path>: <why>" of each unreadable metrics.json

    def skipped_text(self) -> str:
        """``skipped 1 failed, 1 unreadable metrics.json: <path>: malformed JSON (...)``: a count alone would
        leave the user searching the sweep dir for the broken file."""
        if not self.skipped:
            return "none skipped"
        parts = [f"{n} {reason}" for reason, n in sorted(self.skipped.items()) if reason != UNREADABLE]
        if self.skipped[UNREADABLE]:
            parts.append(f"{self.skipped[UNREADABLE]} {UNREADABLE} {METRICS_FILE}"
                         + (f": {'; '.join(self.unreadable)}" if self.unreadable else ""))
        return "skipped " + ", ".join(parts)


def merged(collections: list[Collection]) -> Collection:
    """Several series as one (``choose`` over several paths)."""
    return Collection(" + ".join(c.series for c in collections), [t for c in collections for t in c.trials],
                      sum((c.skipped for c in collections), Counter()), [u for c in collections for u in c.unreadable])


def _unreadable_reason(run_dir: Path, error: str) -> str:
    """``<path>: malformed JSON (<decoder's words>)`` from read_metrics' ``<path>: <error>``."""
    path = str(run_dir / METRICS_FILE)
    why = error.removeprefix(f"{path}: ")
    if why != "not a JSON object" and not why.startswith("["):  # "[Errno 13] ...": an OSError, said as it is
        why = f"malformed JSON ({why})"
    return f"{path}: {why}"


def params_from_overrides(lines: list[str]) -> dict[str, str]:
    """``['+level=\\'4\\'', 'train.lora_r=8', '+search=grid']`` -> ``{'level': '4', 'train.lora_r': '8'}``."""
    params = {}
    for line in lines:
        key, value = override_key(line), str(line).partition("=")[2]
        if not any(key == skip or key.startswith(skip) for skip in _NOT_PARAMS):
            params[key] = value.strip("'\"")
    return params


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def run_config(run_dir: Path) -> Any:
    """A run dir's composed config (``.hydra/config.yaml``), or None when it has none."""
    return _yaml(run_dir / ".hydra" / "config.yaml")


def is_latent(scores: dict[str, Any] | None, config: dict[str, Any] | None) -> bool:
    """Whether a run dir's trial is at the latent level: its eval record says so (``latent: true``), or its composed
    config has ``level.latent`` (a trial that failed before its evaluation)."""
    level = (config or {}).get("level")
    return bool((scores or {}).get("latent")) or (isinstance(level, dict) and level.get("latent") is not None)


def trial_from_metrics(metrics: dict[str, Any], series: str, name: str, run_dir: Path | None,
                       params: dict[str, str], config: dict[str, Any] | None = None) -> Trial:
    """A completed trial from its ``metrics.json`` (and composed config, when there is one), read as the trial
    record it is: the scores are the eval stage's, where ``accuracy_extractor`` lives too."""
    config = config or {}
    record = TrialRecord.from_json(metrics)
    scores = record.eval or {}
    ci = scores.get("accuracy_ci") or [scores["accuracy"], scores["accuracy"]]
    n_eval, eval_seconds = scores.get("n_eval"), scores.get("eval_seconds")
    sampling = config.get("sampling") or {}
    return Trial(
        series=series, name=name, run_dir=run_dir, level=record.level, baseline=record.adapter == "none",
        params=params, accuracy=float(scores["accuracy"]), accuracy_ci=(float(ci[0]), float(ci[1])),
        mean_think_tokens=float(scores["mean_think_tokens"]),
        mean_completion_tokens=scores.get("mean_completion_tokens"),
        seconds_per_problem=eval_seconds / n_eval if n_eval and eval_seconds is not None else None,
        n_eval=n_eval, n_train=record.n_train, max_new_tokens=sampling.get("max_new_tokens"),
        model=record.model or (config.get("model") or {}).get("name"),
        data=(record.data or {}).get("name") or (config.get("data") or {}).get("name"),
        accuracy_extractor=scores.get("accuracy_extractor") or "flexible",
        thinking=scores.get("thinking") or "on",
        latent=is_latent(scores, config),
    )


def _has_scores(metrics: dict[str, Any]) -> bool:
    return all(metrics.get(key) is not None for key in ("accuracy", "mean_think_tokens"))


def _trial_from_run(run_dir: Path, metrics: dict[str, Any], series: str, name: str | None = None) -> Trial:
    params = params_from_overrides(_yaml(run_dir / ".hydra" / "overrides.yaml") or [])
    return trial_from_metrics(metrics, series, name or run_dir.name, run_dir, params,
                              run_config(run_dir))


def _name(run_dir: Path, root: Path) -> str:
    """A run dir's name in its sweep: ``trial_0003``, or ``trial_0003/no_think`` for the no-think record of
    ``eval.thinking=both``, which lives inside its trial's run dir."""
    relative = run_dir.relative_to(root) if run_dir != root else Path(run_dir.name)
    return relative.as_posix()


def _no_think_twin(run_dir: Path | None) -> Path | None:
    """The no-think run dir of a trial evaluated with ``eval.thinking=both``, if it completed."""
    if run_dir is None:
        return None
    twin = run_dir / NO_THINK_DIR
    metrics = read_metrics(twin) if (twin / METRICS_FILE).is_file() else {}
    return twin if metrics.get("status") == "completed" and _has_scores(metrics) else None


def collect_dir(root: Path, series: str | None = None) -> Collection:
    """Every run dir below ``root`` (a sweep dir, a multirun dir, or one run dir)."""
    collection = Collection(series or root.resolve().name)
    run_dirs = {path.parent.parent for path in root.rglob(".hydra/config.yaml")}
    run_dirs |= {path.parent for path in root.rglob(METRICS_FILE)}
    for run_dir in sorted(run_dirs):
        metrics = read_metrics(run_dir)
        status = metrics.get("status")
        if status in ("failed", UNREADABLE):
            collection.skipped[status] += 1
            if status == UNREADABLE:
                collection.unreadable.append(_unreadable_reason(run_dir, str(metrics.get("error", ""))))
        elif status != "completed" or not _has_scores(metrics):
            collection.skipped["incomplete" if status != "completed" else "without eval"] += 1
        else:
            collection.trials.append(_trial_from_run(run_dir, metrics, collection.series, _name(run_dir, root)))
    return collection


def collect_study(storage: str, study_name: str | None, series: str | None = None) -> Collection:
    """The trials of an Optuna study, from a storage URL or a journal file."""
    import optuna
    from optuna.trial import TrialState

    from sweep.search.study import REPEAT_OF, open_storage

    backend = open_storage(storage, Path("."))
    names = [summary.study_name for summary in optuna.get_all_study_summaries(backend)]
    if study_name is None:
        if len(names) != 1:
            raise CotParetoError(f"{redact(storage)} holds {len(names)} studies ({', '.join(names) or 'none'}): "
                                 "name one with --study")
        study_name = names[0]
    elif study_name not in names:
        raise CotParetoError(f"{redact(storage)} has no study {study_name!r} (it has: {', '.join(names) or 'none'})")
    study = optuna.load_study(study_name=study_name, storage=backend)
    collection = Collection(series or study_name)
    for trial in study.get_trials(deepcopy=False):
        attrs, metrics = trial.user_attrs, trial.user_attrs.get("metrics") or {}
        if trial.state == TrialState.FAIL:
            collection.skipped["failed"] += 1
        elif trial.state != TrialState.COMPLETE:
            collection.skipped["incomplete"] += 1
        elif attrs.get(REPEAT_OF) is not None:
            collection.skipped["repeat"] += 1  # the same point as an earlier trial, whose result it reused
        elif not _has_scores(metrics):
            collection.skipped["without eval"] += 1
        else:
            run_dir = Path(attrs["run_dir"]) if attrs.get("run_dir") else None
            config = run_config(run_dir) if run_dir else None
            params = {key.lstrip("+"): str(value) for key, value in trial.params.items()}
            name = f"trial_{trial.number:04d}"
            collection.trials.append(trial_from_metrics(metrics, collection.series, name,
                                                        run_dir if run_dir and run_dir.is_dir() else None,
                                                        params, config))
            twin = _no_think_twin(run_dir)  # not a trial of the study: the same adapter, evaluated thinking off
            if twin is not None:
                collection.trials.append(_trial_from_run(twin, read_metrics(twin), collection.series,
                                                         f"{name}/{NO_THINK_DIR}"))
    # The sweeper's baseline run is not a trial of the study: it lives beside the trials' run dirs.
    sweep_dirs = {Path(t.user_attrs["run_dir"]).parent for t in study.get_trials(deepcopy=False)
                  if t.user_attrs.get("run_dir")} | ({Path(storage).parent} if "://" not in storage else set())
    for sweep_dir in sorted(sweep_dirs):
        metrics = read_metrics(sweep_dir / "baseline")
        if metrics.get("status") == "completed" and _has_scores(metrics):
            collection.trials.append(_trial_from_run(sweep_dir / "baseline", metrics, collection.series))
            twin = _no_think_twin(sweep_dir / "baseline")
            if twin is not None:
                collection.trials.append(_trial_from_run(twin, read_metrics(twin), collection.series,
                                                         f"baseline/{NO_THINK_DIR}"))
            break
    return collection


def is_storage(source: str) -> bool:
    return "://" in source or source.endswith(".journal")


def load_trials(source: str, study_name: str | None = None, series: str | None = None) -> Collection:
    """A sweep dir, or a storage (URL or ``*.journal`` file) with an optional study name."""
    if is_storage(source):
        if "://" not in source and not Path(source).is_file():
            raise CotParetoError(f"{source} does not exist")
        collection = collect_study(source, study_name, series)
    else:
        path = Path(source)
        if not path.exists():
            raise CotParetoError(f"{source} does not exist")
        if not path.is_dir():
            raise CotParetoError(f"{redact(source)} is neither a sweep dir nor an Optuna storage (*.journal, or a URL)")
        collection = collect_dir(path, series)
    if not collection.trials and not collection.skipped:
        raise CotParetoError(f"{source} holds no trials (no run dir with a metrics.json)")
    if not collection.trials:
        # A report or a choice over nothing would only look like an answer.
        raise CotParetoError(f"{source} holds no completed trial ({collection.skipped_text()})")
    return collection
