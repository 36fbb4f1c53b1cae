"""The latent level's warm-up end to end on the tiny Qwen3: two rounds of Phase A and Phase B through the real
pipeline (reference teacher, filter, HF Trainer, PEFT), each phase cached, resumed and logged."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from sweep.pipeline import run_pipeline
from tests.conftest import compose_config
from training.caching.stage_cache import SUMMARY_FILE
from training.common.errors import ConfigError
from training.common.jsonl import read_jsonl
from training.data.levels import level_from_config
from training.latent.warmup import LATENT_DIR, PHASE_STAGE, examples, phase_names

# Short spans and few rows: the cost of a phase is the tiny model's 151k-row head, not the symbols.
TRIAL = ("+level=abstract", "model=tiny-qwen3", "data.n_train=8", "hardware=cpu", "stages=[traces,filter,train]",
         "train.batch_size=4", "train.epochs=1", "train.logging_steps=1", "level.latent.z_min=3",
         "level.latent.z_max=5", "level.latent.max_abstract_tokens=6", "wandb.mode=offline")
PHASES = ["round1_a", "round1_b", "round2_a", "round2_b"]
WEIGHTS = "adapter/adapter_model.safetensors"


@pytest.fixture(scope="module")
def warmed(tmp_path_factory, wandb_logged):
    """One two-round warm-up, trained into a module-wide stage cache."""
    run, cache = tmp_path_factory.mktemp("warm"), tmp_path_factory.mktemp("cache")
    summary = run_pipeline(compose_config(*TRIAL, f"cache.dir={cache}"), run, group="tests")
    assert summary["status"] == "completed", summary.get("error")
    return run, cache, summary, list(wandb_logged)


def test_two_rounds_write_every_phase_and_the_adapter_is_the_last_phase(warmed):
    run, _, summary, logged = warmed
    phases = summary["train"]["latent_phases"]
    assert [f"round{p['round']}_{p['phase']}" for p in phases] == PHASES
    assert [p["z_source"] for p in phases] == ["random", "on-policy", "on-policy", "on-policy"]
    for name in PHASES:
        folder = run / LATENT_DIR / name
        for file in (WEIGHTS, "adapter/tokenizer.json", "adapter/adapter_config.json", "z.jsonl", "summary.json"):
            assert (folder / file).is_file(), f"{name}: {file} missing"
        assert not (folder / "trainer").exists()  # the Trainer's scratch is not left behind
    assert (run / WEIGHTS).read_bytes() == (run / LATENT_DIR / "round2_b" / WEIGHTS).read_bytes()
    assert summary["n_train"] == len(read_jsonl(run / "filtered.jsonl")) == 8
    # Round 1's z is random within [z_min, z_max]; the model's own spans respect the decoding cap.
    random_z = [row["z"] for row in read_jsonl(run / LATENT_DIR / "round1_a" / "z.jsonl")]
    assert all(3 <= len(z) <= 5 for z in random_z) and len({tuple(z) for z in random_z}) == 8
    for name in PHASES[1:]:
        assert all(len(row["z"]) <= 6 and all(0 <= s < 64 for s in row["z"])
                   for row in read_jsonl(run / LATENT_DIR / name / "z.jsonl"))
    # Each phase trained: its weights differ from the phase before.
    weights = [load_file(run / LATENT_DIR / name / WEIGHTS) for name in PHASES]
    for before, after in zip(weights, weights[1:]):
        assert any(not torch.equal(before[k], after[k]) for k in before)
    # Each phase's loss curve reached the trial's W&B run under its own name.
    for name in PHASES:
        assert any(f"latent/{name}/loss" in entry for entry in logged), name


def test_every_phase_is_restored_from_the_cache(warmed, tmp_path):
    run, cache, _, _ = warmed
    again = run_pipeline(compose_config(*TRIAL, f"cache.dir={cache}"), tmp_path, group="tests")
    assert [p["cache"] for p in again["train"]["latent_phases"]] == ["hit"] * 4
    assert (tmp_path / WEIGHTS).read_bytes() == (run / WEIGHTS).read_bytes()
    assert (tmp_path / LATENT_DIR / "round1_b" / "z.jsonl").is_file()


def test_a_warm_up_cut_off_in_its_last_phase_resumes_from_the_one_before(warmed, tmp_path):
    """The cache holds round 2's Phase A but not its Phase B (a trial killed in it): the rerun restores three
    phases, loads the third's adapter and trains the fourth again, to the same z and the same weights."""
    run, cache, _, _ = warmed
    partial = tmp_path / "cache"
    shutil.copytree(cache, partial)
    entries = [e for e in (partial / PHASE_STAGE).iterdir() if (e / SUMMARY_FILE).is_file()
               and json.loads((e / SUMMARY_FILE).read_text())["key_parts"]["phase"] == "round2_b"]
    assert len(entries) == 1
    shutil.rmtree(entries[0])
    resumed = run_pipeline(compose_config(*TRIAL, f"cache.dir={partial}"), tmp_path / "run", group="tests")
    assert [p["cache"] for p in resumed["train"]["latent_phases"]] == ["hit", "hit", "hit", "miss"]
    last = tmp_path / "run" / LATENT_DIR / "round2_b"
    assert read_jsonl(last / "z.jsonl") == read_jsonl(run / LATENT_DIR / "round2_b" / "z.jsonl")
    ours, theirs = load_file(last / WEIGHTS), load_file(run / LATENT_DIR / "round2_b" / WEIGHTS)
    diffs = {k: float((ours[k] - theirs[k]).abs().max()) for k in theirs}
    assert max(diffs.values()) <= 1e-6, sorted(diffs.items(), key=lambda kv: -kv[1])[:5]


def test_latent_settings_are_checked_with_one_line_errors():
    base = dict(compose_config("+level=abstract").level)
    assert level_from_config(base).tag == "latent" and level_from_config(base).teacher_level.latent is None
    assert "Level 1" in level_from_config(base).teacher_level.instruction
    for latent, message in [({"z_min": 9, "z_max": 4}, "z_min (9) is above z_max (4)"),
                            ({"rounds": 0}, "level.latent.rounds must be an integer >= 1"),
                            ({"z_max": 200}, "above max_abstract_tokens"),
                            ({"round": 2}, "unknown latent setting(s) round")]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            level_from_config({**base, "latent": {**dict(base["latent"]), **latent}})


def test_examples_need_the_verbal_cot_of_each_row():
    row = {"id": "p1", "sample": 0, "prompt": [{"role": "user", "content": "q"}], "answer": "7",
           "completion": [{"role": "assistant", "content": "<think>\n3 + 4 = 7\n</think>\n#### 7"}]}
    [example] = examples([row], ("<think>", "</think>"))
    assert (example.key, example.cot, example.answer) == ("p1:0", "3 + 4 = 7", "7")
    with pytest.raises(Exception, match="row 1 \\(p1\\): its completion has no single think block"):
        examples([{**row, "completion": [{"role": "assistant", "content": "#### 7"}]}], ("<think>", "</think>"))
    assert phase_names(2) == [(1, "a"), (1, "b"), (2, "a"), (2, "b")]


def test_the_latent_level_is_selectable_and_its_teacher_writes_level_one(warmed):
    from sweep.cli import available_levels

    assert "abstract" in available_levels()
    run = warmed[0]
    # The reference teacher rendered the verbal CoT at level 1's renderer; the student's prompt is the level's own.
    [row] = read_jsonl(run / "filtered.jsonl")[:1]
    assert row["prompt"][-1]["content"].startswith("Solve this by latent reasoning.")
    assert "<think>" in row["completion"][0]["content"]
