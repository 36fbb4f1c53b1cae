"""teacher=openai against real servers on loopback: `transformers serve` with the tiny Qwen3, and a scripted
http.server for the failure paths. No mocks: every request crosses a real socket."""

import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sweep.pipeline import run_pipeline
from sweep.stages.traces import build_teacher
from tests.conftest import compose_config
from training.caching.response_cache import ResponseCache
from training.common.errors import ConfigError, TeacherError
from training.common.jsonl import read_jsonl
from training.data.levels import level_from_config
from training.data.problems import Problem
from training.models.loading import model_path
from training.teachers.openai_api import OpenAITeacher

REPO = Path(__file__).resolve().parent.parent
KEY_ENV = "COT_PARETO_TEST_KEY"
SERVE = "import sys; from transformers.cli.transformers import main; sys.argv[0] = 'transformers'; sys.exit(main())"
# Small answers and tiny backoff: the whole module must stay well under half a minute on 2 cores.
FAST = ("model=tiny-qwen3", "hardware=cpu", "wandb.mode=offline", "teacher.max_tokens=8", "teacher.backoff_s=0.01",
        f"teacher.api_key_env={KEY_ENV}")
STATS = re.compile(r"(\d+) sent, (\d+) from cache, (\d+) retries, (\d+) failed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`transformers serve` with the tiny model, pinned, on a free loopback port; its access log counts requests."""

    def __init__(self, model_dir: Path, log_path: Path) -> None:
        self.model_dir, self.log_path, self.proc = model_dir, log_path, None

    def start(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", SERVE, "serve", str(self.model_dir), "--host",
                                          "127.0.0.1", "--port", str(self.port), "--device", "cpu"],
                                         stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while True:  # GET /v1/models needs a HF cache; a TCP connect needs nothing
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log_path.read_text()
            try:
                return socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.kill()  # a test server has nothing to save
        self.proc.wait()

    def posts(self, quiet_s: float = 0.3) -> int:
        """Chat requests answered, once the count settles: a killed client's request may still be answered."""
        count, since = -1, time.monotonic()
        while count < 0 or time.monotonic() - since < quiet_s:
            if (now := self.log_path.read_text().count('"POST /v1/chat/completions HTTP/1.1" 200')) != count:
                count, since = now, time.monotonic()
            time.sleep(0.05)
        return count


@pytest.fixture(scope="module", autouse=True)
def server(tmp_path_factory):
    """Started with the module, without waiting: it loads while the tests that need no server run."""
    model_dir = Path(model_path(compose_config("+level=4", "model=tiny-qwen3").model))
    handle = Server(model_dir, tmp_path_factory.mktemp("serve") / "server.log")
    handle.start()
    yield handle
    handle.stop()


@pytest.fixture
def live(server):
    """The shared server once it listens; restarted if a test stopped it (only when tests run out of file order)."""
    if server.proc.poll() is not None:
        server.start()
    server.wait_ready()
    return server


@pytest.fixture
def secret_key(monkeypatch) -> str:
    monkeypatch.setenv(KEY_ENV, key := f"sk-test-{secrets.token_hex(16)}")
    return key


def stats(caplog) -> dict[str, int]:
    """The teacher's own summary line of its last run."""
    *_, last = STATS.finditer(caplog.text)
    return dict(zip(("sent", "cache_hits", "retries", "failures"), map(int, last.groups())))


def assert_not_in_files(secret: str, *roots: Path) -> int:
    files = [path for root in roots for path in root.rglob("*") if path.is_file()]
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    return len(files)


def serve_overrides(server: Server, *extra: str) -> list[str]:
    return ["+level=4", "teacher=openai", f"teacher.base_url={server.base_url}", f"teacher.model={server.model_dir}",
            *FAST, *extra]


def test_config_composes_and_needs_a_model(fresh_stage_cache):
    cfg = compose_config("+level=4", "teacher=openai")
    assert cfg.teacher.system is None and cfg.teacher.exemplars == "level" and cfg.teacher.api_key_env == "OPENAI_API_KEY"
    teacher, _ = build_teacher(cfg.teacher)
    with pytest.raises(ConfigError, match="teacher.model is not set"):  # before any request
        teacher.generate([Problem("p1", "What is 2+3?", "2+3=5", "5")], level_from_config(cfg.level))
    teacher, n_samples = build_teacher(compose_config("+level=4", "teacher=openai", "teacher.model=m",
                                                      "teacher.n_samples=3").teacher)
    assert isinstance(teacher, OpenAITeacher) and n_samples == 3 and teacher.n_shots == 2
    assert teacher.cache.root == fresh_stage_cache / "responses"  # per-test stage cache isolates responses


def test_unreachable_server_gives_error_traces_after_retries(run_dir, fresh_stage_cache):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: connection refused
    summary = run_pipeline(compose_config("+level=4", "teacher=openai", f"teacher.base_url={url}", "teacher.model=m",
                                          *FAST, "teacher.max_retries=2", "data.n_train=3", "stages=[traces,filter]"),
                           run_dir)
    assert summary["status"] == "completed" and summary["traces"]["teacher_errors"] == 3
    errors = [row["error"] for row in read_jsonl(run_dir / "traces.jsonl")]
    assert all(f"{url}/chat/completions: gave up after 3 attempts: ConnectError" in error for error in errors), errors
    assert summary["filter"]["dropped"] == {"teacher_error": 3}
    assert not list(fresh_stage_cache.glob("traces/*/summary.json"))  # a stage with teacher errors is not stored
    assert len(ResponseCache(fresh_stage_cache / "responses")) == 0  # failures are never cached


class Scripted(BaseHTTPRequestHandler):
    """/flaky: 503, then 429 with Retry-After, then an answer; /auth: 401; /bad: 400."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = self.path.split("/")[1]
        self.server.auth.append(self.headers.get("Authorization"))
        self.server.hits[mode] += 1
        if mode == "auth":
            return self.send(401, {"error": {"message": "invalid api key"}})
        if mode == "bad":
            return self.send(400, {"error": {"message": f"model {body['model']!r} does not exist"}})
        if self.server.hits[mode] == 1:
            return self.send(503, {"error": "overloaded"})
        if self.server.hits[mode] == 2:
            return self.send(429, {"error": "slow down"}, {"Retry-After": "0.3"})
        message = {"role": "assistant", "content": "#### 5", "reasoning_content": "a=2+3=5"}
        self.send(200, {"model": body["model"], "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})

    def send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


@pytest.fixture
def scripted():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    httpd.auth, httpd.hits = [], Counter()
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_retries_honour_retry_after_and_auth_errors_stop_the_run(scripted, secret_key, tmp_path, monkeypatch, caplog):
    level = level_from_config(compose_config("+level=4").level)
    problem = Problem("p1", "What is 2+3?", "2+3=5", "5")
    root = f"http://127.0.0.1:{scripted.server_port}"

    def teacher(mode: str) -> OpenAITeacher:
        return OpenAITeacher("m", f"{root}/{mode}/v1", api_key_env=KEY_ENV, backoff_s=0.001, cache_dir=tmp_path)

    flaky, start = teacher("flaky"), time.perf_counter()
    [[trace]] = flaky.generate([problem], level)
    assert time.perf_counter() - start >= 0.3  # waited as long as Retry-After said, not the 1 ms backoff
    assert trace.error is None and trace.completion == "<think>\na=2+3=5\n</think>\n#### 5"  # reasoning put back
    assert flaky.stats == {"requests": 1, "cache_hits": 0, "sent": 3, "retries": 2, "failures": 0, "empty": 0}
    assert scripted.auth == [f"Bearer {secret_key}"] * 3  # read from the environment, sent in the header only
    assert assert_not_in_files(secret_key, tmp_path) == 1
    again = teacher("flaky")
    assert again.generate([problem], level) == [[trace]] and again.stats["cache_hits"] == 1
    assert scripted.hits["flaky"] == 3

    with pytest.raises(TeacherError, match=rf"HTTP 401: the API key in \${KEY_ENV} was refused") as refused:
        teacher("auth").generate([problem] * 3, level)
    assert secret_key not in str(refused.value)
    monkeypatch.delenv(KEY_ENV)
    caplog.set_level(logging.INFO, logger="training.teachers.openai_api")
    with pytest.raises(TeacherError, match=rf"wants an API key: \${KEY_ENV} is not set"):
        teacher("auth").generate([problem] * 3, level)
    assert scripted.auth[-1] is None and caplog.text.count(f"${KEY_ENV} is not set: sending requests without") == 1
    with pytest.raises(TeacherError, match=r"HTTP 400: .*model 'm' does not exist"):
        teacher("bad").generate([problem], level)


def test_traces_and_filter_through_a_real_server_never_store_the_key(live, run_dir, secret_key, caplog,
                                                                     fresh_stage_cache):
    caplog.set_level(logging.INFO)
    before = live.posts()
    summary = run_pipeline(compose_config(*serve_overrides(live, "data.n_train=3", "teacher.n_samples=2",
                                                            "teacher.concurrency=2", "stages=[traces,filter]")), run_dir)
    assert summary["status"] == "completed" and summary["traces"]["n_traces"] == 6
    rows = read_jsonl(run_dir / "traces.jsonl")  # one row per problem x sample
    assert sorted(Counter(row["problem_id"] for row in rows).values()) == [2] * 3
    assert {row["sample"] for row in rows} == {0, 1} and all(row["teacher"].startswith("openai:") for row in rows)
    report = json.loads((run_dir / "filter_report.json").read_text())
    assert report["n_traces"] == 6 and report["kept_traces"] + sum(report["dropped"].values()) == 6
    assert stats(caplog) == {"sent": 6, "cache_hits": 0, "retries": 0, "failures": 0}
    assert live.posts() == before + 6
    cache = fresh_stage_cache / "responses"
    assert len(ResponseCache(cache)) == 6
    assert assert_not_in_files(secret_key, run_dir, cache) >= 6 + 3
    assert secret_key not in caplog.text

    # A request the server rejects (422: unknown field) fails the run at once, with the server's own words.
    teacher = OpenAITeacher(live.model_dir, live.base_url, api_key_env=None, cache_dir=run_dir / "rejected",
                            extra_body={"no_such_field": 1})
    with pytest.raises(TeacherError, match=r"rejected the request with HTTP 422: .*no_such_field"):
        teacher.generate([Problem("p1", "What is 2+3?", "2+3=5", "5")], level_from_config(compose_config("+level=4").level))
    assert teacher.stats["sent"] == 1 and teacher.stats["retries"] == 0 and not (run_dir / "rejected").exists()


def test_killed_run_resumes_from_cached_responses(live, tmp_path, secret_key, caplog, fresh_stage_cache):
    """Runs last: it ends by stopping the shared server, to show a fully cached run needs no server."""
    caplog.set_level(logging.INFO)
    cache = ResponseCache(fresh_stage_cache / "responses")
    args = serve_overrides(live, "data.n_train=6")
    killed = tmp_path / "killed"
    before = live.posts()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": ""}
    proc = subprocess.Popen([sys.executable, "-m", "sweep", *args, "teacher.concurrency=1", "stages=[traces]",
                             f"hydra.run.dir={killed}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while len(cache) < 2:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no response cached within 60s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    kept = len(cache)
    assert 2 <= kept < 6 and not (killed / "traces.jsonl").exists()  # genuinely interrupted mid-stage
    assert_not_in_files(secret_key, killed, cache.root)  # .hydra/config.yaml holds the variable's name only
    assert KEY_ENV in (killed / ".hydra" / "config.yaml").read_text()

    sent_before = live.posts()
    assert sent_before - before in (kept, kept + 1)  # the one the kill cut short may have been answered, not cached
    resumed = run_pipeline(compose_config(*args, "teacher.concurrency=2", "stages=[traces,filter]"), tmp_path / "resumed")
    assert stats(caplog) == {"sent": 6 - kept, "cache_hits": kept, "retries": 0, "failures": 0}
    assert live.posts() - sent_before == 6 - kept and len(cache) == 6
    assert resumed["traces"]["n_traces"] == 6

    live.stop()  # every answer is cached: the same run needs no server (stage cache off, so the teacher runs)
    offline = run_pipeline(compose_config(*args, "stages=[traces,filter]", "cache.enabled=false"), tmp_path / "offline")
    assert offline["status"] == "completed" and stats(caplog) == {"sent": 0, "cache_hits": 6, "retries": 0, "failures": 0}
    assert read_jsonl(tmp_path / "offline" / "traces.jsonl") == read_jsonl(tmp_path / "resumed" / "traces.jsonl")
    assert_not_in_files(secret_key, tmp_path)
