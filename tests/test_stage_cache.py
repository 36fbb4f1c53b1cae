"""The content-addressed stage cache: a hit restores the files without running the stage; one worker computes a key."""

from __future__ import annotations

import json
import logging
import threading
import time

from training.caching.stage_cache import run_cached, stage_key


def _stage(run_dir, calls, text="rows\n", errors=0):
    def compute():
        calls.append(run_dir)
        (run_dir / "out.jsonl").write_text(text)
        return {"n": 1, "teacher_errors": errors, "seconds": 2.5}
    return compute


def test_second_run_restores_the_files_without_computing(tmp_path):
    calls: list = []
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    miss = run_cached(tmp_path / "cache", "traces", {"level": 4}, first, ["out.jsonl"], _stage(first, calls))
    hit = run_cached(tmp_path / "cache", "traces", {"level": 4}, second, ["out.jsonl"], _stage(second, calls))
    assert calls == [first]
    assert (second / "out.jsonl").read_text() == "rows\n"
    assert miss["cache"] == "miss" and hit["cache"] == "hit" and hit["cache_key"] == miss["cache_key"]
    assert hit["computed_seconds"] == 2.5 and hit["seconds"] < 1 and "key_parts" not in hit
    stored = json.loads((tmp_path / "cache" / "traces" / miss["cache_key"] / "summary.json").read_text())
    assert stored["key_parts"] == {"level": 4}


def test_other_settings_or_incomplete_output_miss(tmp_path):
    calls: list = []
    for i, parts in enumerate(({"level": 4}, {"level": 5}, {"level": 4, "seed": 1})):
        run_dir = tmp_path / str(i)
        run_dir.mkdir()
        run_cached(tmp_path / "cache", "traces", parts, run_dir, ["out.jsonl"], _stage(run_dir, calls))
    assert len(calls) == 3
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    ok = lambda summary: summary["teacher_errors"] == 0  # noqa: E731
    run_cached(tmp_path / "cache", "t2", {}, flaky, ["out.jsonl"], _stage(flaky, calls, errors=1), cacheable=ok)
    run_cached(tmp_path / "cache", "t2", {}, flaky, ["out.jsonl"], _stage(flaky, calls, errors=1), cacheable=ok)
    assert len(calls) == 5  # a stage with teacher errors is retried, not cached
    assert run_cached(None, "t2", {}, flaky, ["out.jsonl"], _stage(flaky, calls))["n"] == 1 and len(calls) == 6


def test_keys_are_stable_and_order_free():
    assert stage_key("traces", {"a": 1, "b": [1, 2]}) == stage_key("traces", {"b": [1, 2], "a": 1})
    assert stage_key("traces", {"a": 1}) != stage_key("filter", {"a": 1})


def test_folders_are_stored_and_restored_whole(tmp_path):
    def train(run_dir):
        def compute():
            (run_dir / "adapter" / "nested").mkdir(parents=True)
            (run_dir / "adapter" / "weights.bin").write_bytes(b"\x00\x01")
            (run_dir / "adapter" / "nested" / "card.md").write_text("card")
            return {"train_seconds": 9.0}
        return compute

    first, second = tmp_path / "a", tmp_path / "b"
    run_cached(tmp_path / "cache", "train", {"r": 8}, first, ["adapter"], train(first))
    hit = run_cached(tmp_path / "cache", "train", {"r": 8}, second, ["adapter"], train(second))
    assert hit["cache"] == "hit" and hit["train_seconds"] == 9.0
    assert (second / "adapter" / "weights.bin").read_bytes() == b"\x00\x01"
    assert (second / "adapter" / "nested" / "card.md").read_text() == "card"


def test_a_second_worker_on_the_same_key_waits_and_restores(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="training.caching.stage_cache")
    started, release, results = threading.Event(), threading.Event(), {}

    def slow_training():
        started.set()
        assert release.wait(30)
        (tmp_path / "a" / "adapter.bin").write_text("weights")
        return {"seconds": 9.0}

    def must_not_run():
        raise AssertionError("the second worker trained the same adapter again")

    def worker(name, compute):
        (tmp_path / name).mkdir()
        results[name] = run_cached(tmp_path / "cache", "train", {"lora_r": 8}, tmp_path / name, ["adapter.bin"], compute)

    first = threading.Thread(target=worker, args=("a", slow_training))
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=worker, args=("b", must_not_run))
    second.start()
    deadline = time.monotonic() + 30
    while "waiting for it" not in caplog.text:  # the second worker is blocked on the first one's lock
        assert time.monotonic() < deadline
        time.sleep(0.01)
    release.set()
    first.join(30), second.join(30)
    assert results["a"]["cache"] == "miss" and results["b"]["cache"] == "hit"
    assert results["b"]["computed_seconds"] == 9.0 and (tmp_path / "b" / "adapter.bin").read_text() == "weights"


def test_settings_that_cannot_change_a_stage_output_stay_out_of_its_key():
    from sweep.stages.base import cache_parts
    from sweep.stages.traces import STAGE as TRACES
    from sweep.stages.train import STAGE as TRAIN
    from tests.conftest import compose_config

    def key(stage, *overrides):
        return cache_parts(compose_config("+level=4", "teacher=openai", "teacher.model=m", *overrides), stage, {})

    # How the teacher's work is done, and early-stopping settings while there is no validation split.
    assert key(TRACES) == key(TRACES, "teacher.concurrency=2", "teacher.max_retries=9")
    assert key(TRAIN) == key(TRAIN, "train.eval_steps=7", "train.load_best_model_at_end=false")
    assert "eval_steps" not in key(TRAIN)["train"] and "lora_r" in key(TRAIN)["train"]
    # No no-think rows: the key of every adapter cached before the mix existed.
    assert "no_think_fraction" not in key(TRAIN)["train"] and key(TRAIN) == key(TRAIN, "train.no_think_fraction=0")
    # What does change the output does change the key.
    assert key(TRACES) != key(TRACES, "teacher.temperature=0.2")
    assert key(TRAIN) != key(TRAIN, "train.val_fraction=0.1")
    assert key(TRAIN) != key(TRAIN, "train.no_think_fraction=0.15")
    assert key(TRAIN, "train.val_fraction=0.1") != key(TRAIN, "train.val_fraction=0.1", "train.no_think_fraction=0.15")
    assert key(TRAIN, "train.val_fraction=0.1") != key(TRAIN, "train.val_fraction=0.1", "train.eval_steps=7")
