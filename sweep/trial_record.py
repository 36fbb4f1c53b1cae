"""The schema of a trial's ``metrics.json``: one typed record, and the one list of its headline metrics.

Every writer and reader goes through this module: the pipeline fills a :class:`TrialRecord` from what its
stages return and writes ``record.to_json()``; the model card, ``sweep_summary.csv``, the sweeper's
user attributes and the run table take their metric names from :data:`SCORES` and
:data:`HEADLINE_METRICS`. It imports nothing of the trial stack, so the search side can depend on it alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"

# What a trial scored: the model card's table and the sweep summary's score columns.
SCORES = ("accuracy", "accuracy_ci", "accuracy_strict", "mean_think_tokens", "median_think_tokens",
          "mean_completion_tokens", "format_error_rate", "n_eval")
# How fast it evaluated.
THROUGHPUT = ("eval_seconds", "eval_tokens_per_second", "eval_prefill_tokens_per_second",
              "eval_decode_tokens_per_second")
# Copied from the eval stage's results to the top level of metrics.json, where analysis and sweeps read them.
HEADLINE_METRICS = SCORES + THROUGHPUT
# How the headline metrics were measured: which extractor ``accuracy`` counts, the thinking mode (on/off), and
# whether the think tokens are a latent span's (the latent level: analysis names it "latent", not by its id).
EVAL_MODE = ("accuracy_extractor", "thinking", "latent")


@dataclass
class TrialRecord:
    """How a trial ended and what each of its stages returned, in ``metrics.json``'s key order.

    Unset (None) fields are left out of the file: a trial that ran only its data stages has no ``eval``.
    """

    run_dir: str
    status: str = RUNNING
    level: int | None = None
    level_name: str | None = None
    stages: list[str] | None = None
    model: str | None = None
    adapter: str | None = None
    data: dict[str, Any] | None = None  # the problems' stats (data stage)
    traces: dict[str, Any] | None = None
    complete_inputs: bool | None = None  # False after failed teacher requests: nothing derived is cached
    filter: dict[str, Any] | None = None
    hardware: dict[str, Any] | None = None
    n_train: int | None = None
    train: dict[str, Any] | None = None
    train_seconds: float | None = None
    eval: dict[str, Any] | None = None
    error: str | None = None
    seconds: float | None = None
    resources: dict[str, Any] = field(default_factory=dict)  # peak_rss_mb, peak_rss_scope

    def headline(self) -> dict[str, Any]:
        """The eval stage's headline metrics (empty before it ran)."""
        return {key: self.eval[key] for key in HEADLINE_METRICS if key in (self.eval or {})}

    def fail(self, err: BaseException) -> None:
        self.status = FAILED
        self.error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__

    def to_json(self) -> dict[str, Any]:
        """``metrics.json``: the status first, the headline metrics at the top level after ``eval``."""
        out: dict[str, Any] = {"status": self.status}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("status", "resources") or value is None:
                continue
            out[item.name] = value
            if item.name == "eval":
                out.update(self.headline())
        out.update(self.resources)
        return out

    @classmethod
    def from_json(cls, metrics: dict[str, Any]) -> TrialRecord:
        """A record read back from ``metrics.json`` (unknown and headline keys are dropped: they live in ``eval``)."""
        names = {item.name for item in fields(cls)} - {"resources"}
        known = {key: value for key, value in metrics.items() if key in names}
        if known.get("eval") is None and any(key in metrics for key in HEADLINE_METRICS):
            # A flat record (an Optuna trial's user attributes, or a hand-made metrics.json): its headline
            # metrics, and which extractor its accuracy counts, are all there is of its evaluation.
            known["eval"] = {key: metrics[key] for key in (*HEADLINE_METRICS, *EVAL_MODE) if key in metrics}
        resources = {key: value for key, value in metrics.items() if key.startswith("peak_rss")}
        return cls(**{"run_dir": "", **known}, resources=resources)
