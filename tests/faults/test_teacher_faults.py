"""A teacher server that echoes the request's ``Authorization`` header back: the key must reach no file.

A real ThreadingHTTPServer on loopback puts the header it received into every field of its answer
(content, reasoning, model, usage) or into a 503 body; the real pipeline writes traces, the filter, the
response cache and the stage cache. No file under the run dir or either cache may hold the key.
"""

import json
import logging
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sweep.pipeline import run_pipeline
from tests.conftest import compose_config
from tests.faults.common import assert_no_secret
from training.caching.response_cache import ResponseCache, request_key
from training.common.jsonl import read_jsonl
from training.data.levels import level_from_config
from training.data.problems import Problem
from training.teachers.openai_api import OpenAITeacher
from training.teachers.prompts import teacher_prompts

KEY_ENV = "COT_PARETO_FAULT_KEY"
CUT = 300  # the teacher's excerpt of an error body, in characters


class Echo(BaseHTTPRequestHandler):
    """/v1: 200 with the header in every field; /down/v1: 503 whose body puts the key across the excerpt's cut."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        auth = self.headers.get("Authorization") or ""
        self.server.auth.append(auth)
        if self.path.startswith("/down"):
            key = auth.removeprefix("Bearer ")
            return self.send(503, ("x" * (CUT - 20) + key + " was the key").encode(), "text/plain")
        message = {"role": "assistant", "content": f"you sent {auth}\n#### 5", "reasoning_content": f"a=2+3=5 {auth}"}
        answer = {"model": f"{body['model']} for {auth}", "usage": {"note": auth},
                  "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
        self.send(200, json.dumps(answer).encode(), "application/json")

    def send(self, status: int, data: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def echo():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    httpd.auth = []
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def key(monkeypatch) -> str:
    monkeypatch.setenv(KEY_ENV, value := f"sk-fault-{secrets.token_hex(16)}")
    return value


def overrides(url: str, *extra: str) -> list[str]:
    return ["+level=4", "model=tiny-qwen3", "hardware=cpu", "wandb.mode=disabled", "teacher=openai",
            f"teacher.base_url={url}", "teacher.model=m", f"teacher.api_key_env={KEY_ENV}", "teacher.backoff_s=0.001",
            "data.n_train=3", "stages=[traces,filter]", *extra]


def test_an_echoed_key_is_masked_in_traces_caches_and_logs(echo, key, tmp_path, fresh_stage_cache, caplog):
    root, httpd = echo
    caplog.set_level(logging.DEBUG)
    summary = run_pipeline(compose_config(*overrides(f"{root}/v1", "teacher.n_samples=2")), tmp_path / "run")
    assert httpd.auth[-6:] == [f"Bearer {key}"] * 6  # the key was sent, and so echoed, every time
    rows = read_jsonl(tmp_path / "run" / "traces.jsonl")
    assert summary["traces"]["n_traces"] == 6 and summary["traces"]["teacher_errors"] == 0  # lost 0
    assert sorted((row["problem_id"], row["sample"]) for row in rows) == sorted(
        {(row["problem_id"], row["sample"]) for row in rows})  # repeated 0
    assert all(row["completion"] == "<think>\na=2+3=5 Bearer ***\n</think>\nyou sent Bearer ***\n#### 5"
               for row in rows), rows[0]
    cache = ResponseCache(fresh_stage_cache / "responses")
    assert len(cache) == 6
    entry = json.loads(next(cache.files()).read_text())
    assert entry["model"] == "m for Bearer ***" and entry["usage"] == {"note": "Bearer ***"}
    assert list(fresh_stage_cache.glob("traces/*/summary.json"))  # complete inputs: the stage was stored, masked
    assert_no_secret(key, tmp_path / "run", fresh_stage_cache)

    # A 503 whose body quotes the key across the excerpt's cut: the trace's error holds no piece of it.
    down = run_pipeline(compose_config(*overrides(f"{root}/down/v1", "teacher.max_retries=0", "seed=7")),
                        tmp_path / "down")
    errors = [row["error"] for row in read_jsonl(tmp_path / "down" / "traces.jsonl")]
    assert down["traces"]["teacher_errors"] == 3 and len(errors) == 3
    assert all(error.endswith(f"HTTP 503: {'x' * (CUT - 20)}***" + " was the key") for error in errors), errors[0]
    assert all(key[9:20] not in error for error in errors)  # not even the part of the key before the cut
    assert len(cache) == 6 and len(list(fresh_stage_cache.glob("traces/*/summary.json"))) == 1  # nothing from errors
    assert_no_secret(key, tmp_path / "down", fresh_stage_cache)
    assert key not in caplog.text and key[9:29] not in caplog.text


def test_a_response_cached_with_the_key_in_it_is_masked_when_read(key, tmp_path):
    """An entry written before answers were masked: the key in it reaches no trace (no request is sent)."""
    teacher = OpenAITeacher("m", "http://127.0.0.1:9/v1", api_key_env=KEY_ENV, cache_dir=tmp_path, max_retries=0)
    problem, level = Problem("p1", "What is 2+3?", "2+3=5", "5"), level_from_config(compose_config("+level=4").level)
    # The request body is the cache key: built as generate builds it.
    [prompt] = teacher_prompts([problem], level, n_shots=teacher.n_shots, exemplars=teacher.exemplars,
                               system=teacher.system, open_tag=teacher.think_open, close_tag=teacher.think_close)
    ResponseCache(tmp_path).put(request_key(teacher.url, teacher.body(prompt, 0)),
                                {"content": f"{key}\n#### 5", "reasoning": ""})
    [[trace]] = teacher.generate([problem], level)
    assert teacher.stats["cache_hits"] == 1 and teacher.stats["sent"] == 0
    assert trace.error is None and trace.completion == "***\n#### 5"
