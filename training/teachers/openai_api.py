"""A teacher behind any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, TGI, hosted APIs).

One request per (problem, sample), ``concurrency`` at a time, each with ``seed + sample``
so servers that honour seeds give the same traces again. Transient failures (connection
errors, timeouts, 408, 429, 5xx) are retried with exponential backoff and jitter; a request
that still fails becomes a trace with ``error`` set, which the traces stage does not cache,
so a rerun retries it. Refused credentials (401/403) and rejected requests (other 4xx)
stop the run at once: every other request would fail the same way.

Every answer is stored in a :class:`~training.caching.response_cache.ResponseCache` as it arrives,
so a killed run loses nothing it received. The API key is read from the environment
variable named by ``api_key_env`` for each request and is never stored or logged: it is
masked in every answer (a server may echo it) before the answer is cached or traced.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import httpx

from training.caching.response_cache import ResponseCache, request_key
from training.caching.stage_cache import cache_dir as stage_cache_dir
from training.common.errors import TeacherError
from training.config.schema import OpenAITeacherSettings
from training.config.settings import read_settings
from training.data.levels import Level
from training.data.problems import Problem
from training.grading.completions import THINK_CLOSE, THINK_OPEN
from training.teachers.base import Trace
from training.teachers.prompts import teacher_prompts
from training.teachers.replies import redact, redacted_excerpt, retry_after

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 429}  # plus every 5xx
AUTH_STATUS = {401, 403}
MAX_RETRY_AFTER_S = 600.0  # a bogus Retry-After must not stall a sweep for hours
MESSAGE_CHARS = 300


class _Retry(Exception):
    """A transient failure: worth another attempt."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class OpenAITeacher:
    def __init__(self, model: str | None = None, base_url: str = "http://localhost:8000/v1",
                 api_key_env: str | None = "OPENAI_API_KEY", n_shots: int = 2, exemplars: str = "level",
                 system: str | None = None,
                 think_open: str = THINK_OPEN, think_close: str = THINK_CLOSE, temperature: float | None = 0.7,
                 top_p: float | None = None, max_tokens: int | None = 1024, concurrency: int = 8,
                 timeout_s: float = 120.0, max_retries: int = 5, backoff_s: float = 1.0, backoff_max_s: float = 60.0,
                 cache_dir: str | None = None, extra_body: dict[str, Any] | None = None) -> None:
        self.name = f"openai:{model}"
        self.model, self.base_url = str(model or ""), str(base_url).rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.api_key_env, self.n_shots, self.system = api_key_env or None, int(n_shots), system
        self.exemplars = exemplars
        self.think_open, self.think_close = think_open, think_close
        self.sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.concurrency, self.timeout_s, self.max_retries = int(concurrency), float(timeout_s), int(max_retries)
        self.backoff_s, self.backoff_max_s = float(backoff_s), float(backoff_max_s)
        self.cache = ResponseCache(Path(cache_dir) if cache_dir else stage_cache_dir(None) / "responses")
        self.extra_body = dict(extra_body or {})
        self.stats = {"requests": 0, "cache_hits": 0, "sent": 0, "retries": 0, "failures": 0, "empty": 0}
        self._lock = threading.Lock()
        self._warned_no_key, self.last_failure = False, ""
        if logging.getLogger("httpx").level == logging.NOTSET:  # it logs each request at INFO; our progress suffices
            logging.getLogger("httpx").setLevel(logging.WARNING)

    def check(self) -> None:
        # The trial checked these with its config (check_config); a teacher made in code is checked here, by
        # generate, before any request: not by __init__, so that one made without a model can still be built.
        read_settings(OpenAITeacherSettings, {
            **self.sampling, "model": self.model, "base_url": self.base_url, "api_key_env": self.api_key_env,
            "n_shots": self.n_shots, "exemplars": self.exemplars, "system": self.system, "think_open": self.think_open,
            "think_close": self.think_close, "concurrency": self.concurrency, "timeout_s": self.timeout_s,
            "max_retries": self.max_retries, "backoff_s": self.backoff_s, "backoff_max_s": self.backoff_max_s,
            "extra_body": self.extra_body}, "teacher")

    def body(self, messages: list[dict[str, str]], seed: int) -> dict[str, Any]:
        """The request body, which is also what the response cache keys on (with the URL)."""
        sampling = {key: value for key, value in self.sampling.items() if value is not None}
        return {"model": self.model, "messages": messages, **sampling, "seed": seed, **self.extra_body}

    def generate(
        self, problems: Sequence[Problem], level: Level, *, n_samples: int = 1, seed: int = 0
    ) -> list[list[Trace]]:
        self.check()
        # Prompts first: a bad n_shots fails before any request is sent.
        prompts = teacher_prompts(problems, level, n_shots=self.n_shots, exemplars=self.exemplars, system=self.system,
                                  open_tag=self.think_open, close_tag=self.think_close)
        jobs = [(i, sample) for i in range(len(problems)) for sample in range(n_samples)]
        results: list[list[Trace | None]] = [[None] * n_samples for _ in problems]
        before = dict(self.stats)  # stats add up over calls; the log lines speak of this one
        self._count("requests", len(jobs))
        start, abort = time.perf_counter(), threading.Event()
        every = max(1, len(jobs) // 10)
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai-teacher")
        client = httpx.Client(timeout=self.timeout_s, limits=httpx.Limits(max_connections=self.concurrency))
        try:
            futures = {pool.submit(self._one, client, abort, problems[i].id, sample,
                                   self.body(prompts[i], seed + sample)): (i, sample) for i, sample in jobs}
            for done, future in enumerate(as_completed(futures), start=1):
                i, sample = futures[future]
                results[i][sample] = future.result()  # re-raises a worker's TeacherError: the run stops
                if done % every == 0 and done < len(jobs):
                    log.info("teacher: %d/%d responses (%d from cache, %d failed)", done, len(jobs),
                             self.stats["cache_hits"] - before["cache_hits"], self.stats["failures"] - before["failures"])
        except BaseException:
            # A fatal error or Ctrl-C: queued requests are dropped, running ones stop at their next attempt.
            abort.set()
            pool.shutdown(wait=False, cancel_futures=True)
            client.close()
            raise
        pool.shutdown()
        client.close()
        s = {key: value - before[key] for key, value in self.stats.items()}
        log.info("teacher: %s at %s gave %d responses for %d problems x %d samples in %.1fs: %d sent, %d from cache, "
                 "%d retries, %d failed, %d empty", self.model, self.base_url, len(jobs), len(problems), n_samples,
                 time.perf_counter() - start, s["sent"], s["cache_hits"], s["retries"], s["failures"], s["empty"])
        if s["failures"]:
            log.warning("teacher: %d requests failed (last: %s); a rerun sends them again", s["failures"],
                        self.last_failure)
        return results  # type: ignore[return-value]  # every slot is filled once all futures are done

    def _one(self, client: httpx.Client, abort: threading.Event, problem_id: str, sample: int,
             body: dict[str, Any]) -> Trace:
        key = request_key(self.url, body)
        answer = self.cache.get(key)
        if answer is not None:
            self._count("cache_hits")
            answer = redact(answer, self._api_key(warn=False))  # an entry cached before answers were masked
        else:
            try:
                answer = self._request(client, abort, body)
            except _Retry as err:
                self._count("failures")
                self.last_failure = str(err)
                return Trace(problem_id, sample, "", self.name, error=str(err), retryable=True)
            self.cache.put(key, answer)
        completion = self._completion(answer)
        if not completion.strip():
            # The server did answer: an empty answer is the filter's empty_output, not a teacher error that
            # would keep the whole traces stage out of the stage cache.
            self._count("empty")
        return Trace(problem_id, sample, completion, self.name)

    def _request(self, client: httpx.Client, abort: threading.Event, body: dict[str, Any]) -> dict[str, Any]:
        """The answer to one request, after retries; _Retry with the last reason when they run out."""
        for attempt in range(self.max_retries + 1):
            try:
                if abort.is_set():
                    raise _Retry("not sent: the run was stopped")
                return self._attempt(client, body)
            except _Retry as err:
                if abort.is_set() or attempt == self.max_retries:
                    raise _Retry(f"{self.url}: gave up after {attempt + 1} attempts: {err}") from None
                delay = min(self.backoff_max_s, self.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)
                if err.retry_after is not None:
                    delay = min(MAX_RETRY_AFTER_S, max(delay, err.retry_after))
                self._count("retries")
                log.debug("teacher: attempt %d failed (%s); retrying in %.2fs", attempt + 1, err, delay)
                abort.wait(delay)  # woken early when the run stops
        raise AssertionError("unreachable")

    def _attempt(self, client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
        key = self._api_key()
        try:
            self._count("sent")
            response = client.post(self.url, json=body, headers={"Authorization": f"Bearer {key}"} if key else {})
        except httpx.TransportError as err:  # connection refused or reset, timeouts, protocol errors
            raise _Retry(redact(f"{type(err).__name__}: {err}", key)) from None
        status = response.status_code
        if status in AUTH_STATUS:
            raise TeacherError(self._auth_message(status, key))
        if status in RETRY_STATUS or status >= 500:
            raise _Retry(f"HTTP {status}: {self._server_text(response, key)}", retry_after(response))
        if status >= 400:
            raise TeacherError(f"{self.url} rejected the request with HTTP {status}: {self._server_text(response, key)}")
        try:
            data = response.json()
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            # Some gateways answer 200 with an error document: treat it as transient.
            raise _Retry(f"malformed response: {self._server_text(response, key)}") from None
        # vLLM's reasoning parsers (and transformers serve) split the think text out of the content.
        content, reasoning = message.get("content"), message.get("reasoning_content") or message.get("reasoning")
        # Masked here, before the cache, the trace or a log sees it: a server that echoes the request's
        # headers would otherwise put the key into every file the run writes.
        return redact({"content": content if isinstance(content, str) else "",
                       "reasoning": reasoning if isinstance(reasoning, str) else "",
                       "finish_reason": choice.get("finish_reason"), "model": data.get("model"),
                       "usage": data.get("usage")}, key)

    def _completion(self, answer: dict[str, Any]) -> str:
        """The answer in the trace format: the think block put back when the server split it out."""
        content, reasoning = answer.get("content") or "", (answer.get("reasoning") or "").strip()
        if reasoning and self.think_open not in content:
            return f"{self.think_open}\n{reasoning}\n{self.think_close}\n{content.strip()}"
        if self.think_close in content and self.think_open not in content:
            # Templates that pre-fill the opener (Qwen3-Thinking, DeepSeek-R1) leave it out of the output.
            return f"{self.think_open}\n{content.lstrip()}"
        return content

    def _api_key(self, warn: bool = True) -> str | None:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if warn and self.api_key_env and not key:
            with self._lock:
                if not self._warned_no_key:
                    self._warned_no_key = True
                    log.info("teacher: $%s is not set: sending requests without an API key", self.api_key_env)
        return key or None

    def _auth_message(self, status: int, key: str | None) -> str:
        if key:
            return f"{self.url} answered HTTP {status}: the API key in ${self.api_key_env} was refused"
        where = f"${self.api_key_env} is not set" if self.api_key_env else "set teacher.api_key_env to its variable"
        return f"{self.url} answered HTTP {status}: the server wants an API key: {where}"

    @staticmethod
    def _server_text(response: httpx.Response, key: str | None) -> str:
        return redacted_excerpt(response.text, key, MESSAGE_CHARS) or "(empty body)"

    def _count(self, stat: str, n: int = 1) -> None:
        with self._lock:
            self.stats[stat] += n

