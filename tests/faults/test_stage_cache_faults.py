"""The stage cache is keyed on what a stage read, and never stores work derived from an incomplete input.

Reproduces a teacher outage: a loopback OpenAI-compatible server answers 503 for half the problems, so the
traces come back short; when it recovers, a new run must see all the traces, not the short run's filtered
set or its adapter.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sweep.pipeline import run_pipeline
from tests.conftest import compose_config
from training.common.jsonl import read_jsonl, write_jsonl
from training.data.problems import load_problems

BASE = ("+level=3", "model=tiny-qwen3", "hardware=cpu", "wandb.mode=disabled", "data.n_train=8", "data.n_eval=2")


class Teacher(BaseHTTPRequestHandler):
    """Answers each problem with its gold answer, or 503 while the problem is in ``server.down``."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        question = body["messages"][-1]["content"]
        gold = next((gold for text, gold in self.server.golds.items() if text in question), None)
        if gold is None or any(text in question for text in self.server.down):
            return self.send(503, {"error": "overloaded"})
        message = {"role": "assistant", "content": f"#### {gold}", "reasoning_content": f"x -> {gold}"}
        self.send(200, {"model": body["model"], "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})

    def send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def teacher_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Teacher)
    problems = load_problems(compose_config(*BASE).data).train
    httpd.golds = {p.question: p.answer for p in problems}
    httpd.down = {p.question for p in problems[1::2]}  # half the problems fail, deterministically
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def entries(cache: Path, stage: str) -> list[Path]:
    """Complete cache entries of ``stage`` (an entry is complete once its summary.json exists)."""
    return [path.parent for path in cache.glob(f"{stage}/*/summary.json")]


def test_a_teacher_outage_is_never_restored_after_the_teacher_recovers(teacher_server, tmp_path, fresh_stage_cache):
    url = f"http://127.0.0.1:{teacher_server.server_port}/v1"
    openai = ("teacher=openai", f"teacher.base_url={url}", "teacher.model=m", "teacher.max_retries=1",
              "teacher.backoff_s=0.001", "teacher.api_key_env=null", "train.batch_size=4")

    outage = run_pipeline(compose_config(*BASE, *openai, "stages=[traces,filter,train]"), tmp_path / "outage")
    assert outage["status"] == "completed" and outage["traces"]["teacher_errors"] == 4
    assert outage["complete_inputs"] is False and outage["n_train"] == 4
    # Nothing derived from the short trace set is stored: not the traces, not the filtered set, not the adapter.
    assert entries(fresh_stage_cache, "traces") == entries(fresh_stage_cache, "filter") == []
    assert entries(fresh_stage_cache, "train") == []

    teacher_server.down = set()
    recovered = run_pipeline(compose_config(*BASE, *openai, "stages=[traces,filter]"), tmp_path / "recovered")
    assert recovered["traces"]["teacher_errors"] == 0 and recovered["complete_inputs"] is True
    assert recovered["filter"]["cache"] == "miss" and recovered["filter"]["kept_problems"] == 8
    assert len(read_jsonl(tmp_path / "recovered" / "filtered.jsonl")) == 8

    # Complete work is stored and restored as before.
    again = run_pipeline(compose_config(*BASE, *openai, "stages=[traces,filter]"), tmp_path / "again")
    assert again["traces"]["cache"] == again["filter"]["cache"] == "hit"
    assert len(read_jsonl(tmp_path / "again" / "filtered.jsonl")) == 8


def test_a_traces_file_given_by_path_is_keyed_on_its_content(tmp_path, fresh_stage_cache):
    made = run_pipeline(compose_config(*BASE, "stages=[traces]"), tmp_path / "made")
    traces = tmp_path / "traces.jsonl"
    rows = read_jsonl(tmp_path / "made" / "traces.jsonl")
    write_jsonl(traces, rows)
    given = ("stages=[filter]", f"+filter.traces_path={traces}")

    first = run_pipeline(compose_config(*BASE, *given), tmp_path / "first")
    second = run_pipeline(compose_config(*BASE, *given), tmp_path / "second")
    assert made["status"] == "completed" and first["filter"]["cache"] == "miss" and second["filter"]["cache"] == "hit"
    assert first["filter"]["kept_problems"] == second["filter"]["kept_problems"] == 8

    write_jsonl(traces, rows[:5])  # the same path, other content: the old filtered set must not come back
    edited = run_pipeline(compose_config(*BASE, *given), tmp_path / "edited")
    assert edited["filter"]["cache"] == "miss" and edited["filter"]["kept_problems"] == 5
    assert len(read_jsonl(tmp_path / "edited" / "filtered.jsonl")) == 5


def test_a_problem_the_reference_teacher_cannot_render_does_not_keep_the_traces_out_of_the_cache(tmp_path):
    # The embedded default's 256 SVAMP training problems hold one whose equation the reference teacher cannot
    # render: that error recurs on every run, so it is not an incomplete input (a failed request is, see above).
    overrides = ("+level=3", "model=tiny-qwen3", "data.n_train=256", "stages=[traces,filter]")
    first = run_pipeline(compose_config(*overrides), tmp_path / "first")
    second = run_pipeline(compose_config(*overrides), tmp_path / "second")
    assert first["traces"]["teacher_errors"] == 1 and first["traces"]["retryable_errors"] == 0
    assert first["complete_inputs"] is True
    assert second["traces"]["cache"] == second["filter"]["cache"] == "hit"
