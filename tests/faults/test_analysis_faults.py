"""``python -m analysis`` against bad input: out-of-range numbers, corrupt metrics.json, and W&B's mode.

Each bad option is one line and exit status 2 before any file is read; a corrupt metrics.json is named
with its reason and the readable trials are all kept; ``--wandb`` on the command line beats the environment.
"""

import csv
import json
from pathlib import Path

import pytest

from analysis.__main__ import main, parse_args
from sweep.tracking import resolve_mode
from tests.faults.common import one_error_line, run_module
from tests.run_dirs import write_run_dir

HELP = "(see python -m analysis {} --help)"


def test_a_bad_number_is_one_line_and_status_2_before_any_file_is_read(tmp_path):
    # The path does not exist: had any work started, the error would be about it.
    result = run_module("analysis", "choose", "missing", "--min-accuracy", "2", cwd=tmp_path)
    assert one_error_line(result) == ("error: argument --min-accuracy: expected an accuracy, a finite number in "
                                      f"[0, 1], not '2' {HELP.format('choose')}")


@pytest.mark.parametrize("command, option, value, expected", [
    ("choose", "--min-accuracy", "nan", "an accuracy, a finite number in [0, 1]"),
    ("choose", "--min-accuracy", "-0.1", "an accuracy, a finite number in [0, 1]"),
    ("choose", "--max-think-tokens", "-5", "a mean number of think tokens, a finite number in [0, inf)"),
    ("choose", "--max-think-tokens", "inf", "a mean number of think tokens, a finite number in [0, inf)"),
    ("choose", "--max-accuracy-drop", "1.5", "an accuracy difference, a finite number in [0, 1]"),
    ("choose", "--max-accuracy-drop", "NaN", "an accuracy difference, a finite number in [0, 1]"),
    ("choose", "--margin", "1", "an accuracy margin, a finite number in [0, 1)"),
    ("report", "--margin", "x", "an accuracy margin, a finite number in [0, 1)"),
    ("report", "--reference-tokens", "0", "a number of think tokens, a finite number in (0, inf)"),
    ("report", "--reference-tokens", "-inf", "a number of think tokens, a finite number in (0, inf)"),
])
def test_every_numeric_option_refuses_out_of_range_and_non_finite_values(capsys, command, option, value, expected):
    # The parser in process: the same SystemExit(2) and stderr as the process above, without its start-up.
    with pytest.raises(SystemExit) as stopped:
        parse_args([command, "missing", f"{option}={value}"])  # "=": argparse reads a lone "-inf" as an option
    captured = capsys.readouterr()
    assert stopped.value.code == 2 and captured.out == ""
    assert captured.err == f"error: argument {option}: expected {expected}, not '{value}' {HELP.format(command)}\n"


def test_the_ends_of_each_range_are_accepted():
    args = parse_args(["choose", "s", "--min-accuracy", "1", "--max-think-tokens", "0", "--max-accuracy-drop", "0",
                       "--margin", "0"])
    assert (args.min_accuracy, args.max_think_tokens, args.max_accuracy_drop, args.margin) == (1.0, 0.0, 0.0, 0.0)
    assert parse_args(["report", "s", "--reference-tokens", "0.5"]).reference_tokens == 0.5


@pytest.fixture
def corrupt_sweep(tmp_path) -> tuple[Path, list[Path]]:
    """One completed trial, one metrics.json cut off mid-write, one that is JSON but not an object."""
    sweep = tmp_path / "sweep"
    write_run_dir(sweep, "L2_ok", 2, 0.5, 10.0)
    write_run_dir(sweep, "L3_cut", 3, 0.4, 8.0)
    write_run_dir(sweep, "L4_list", 4, 0.3, 6.0)
    (sweep / "L3_cut" / "metrics.json").write_text('{"status": "compl')
    (sweep / "L4_list" / "metrics.json").write_text("[1, 2]")
    return sweep, [sweep / "L3_cut" / "metrics.json", sweep / "L4_list" / "metrics.json"]


def test_each_unreadable_metrics_json_is_named_and_the_readable_trials_are_kept(corrupt_sweep, tmp_path, capsys):
    sweep, (cut, listed) = corrupt_sweep
    named = (f"skipped 2 unreadable metrics.json: {cut}: malformed JSON (Unterminated string starting at: line 1 "
             f"column 12 (char 11)); {listed}: not a JSON object")
    assert main(["report", str(sweep), "--out", str(tmp_path / "out"), "--wandb", "disabled"]) == 0
    assert f"sweep: 1 completed trials ({named}); no baseline" in capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "report.json").read_text())["series"][0]
    assert summary["skipped"] == {"unreadable": 2} and len(summary["unreadable"]) == 2
    rows = list(csv.DictReader((tmp_path / "out" / "trials.csv").open()))
    assert [row["trial"] for row in rows] == ["L2_ok"]  # lost 0, repeated 0
    assert main(["choose", str(sweep)]) == 0
    assert f"sweep: 1 completed trials ({named}), 1 on the front" in capsys.readouterr().out


def test_nothing_readable_left_is_one_line_and_status_2(corrupt_sweep, tmp_path, capsys):
    sweep, (cut, _) = corrupt_sweep
    only = tmp_path / "only"
    (only / "L3_cut").mkdir(parents=True)
    cut.rename(only / "L3_cut" / "metrics.json")
    for command in ("report", "choose"):
        assert main([command, str(only)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err == (
            f"error: {only} holds no completed trial (skipped 1 unreadable metrics.json: {only}/L3_cut/metrics.json: "
            "malformed JSON (Unterminated string starting at: line 1 column 12 (char 11)))\n")
    assert not (only / "report").exists()  # no report of nothing


def test_the_wandb_flag_beats_the_environment(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    write_run_dir(sweep, "L2_ok", 2, 0.5, 10.0)
    monkeypatch.chdir(tmp_path)  # W&B's default dir is the working dir: it must stay empty of runs too
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["report", str(sweep), "--out", str(tmp_path / "off"), "--wandb", "disabled"]) == 0
    assert "wandb:" not in capsys.readouterr().out
    assert not [path for path in tmp_path.rglob("*wandb*")]
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert main(["report", str(sweep), "--out", str(tmp_path / "on"), "--wandb", "offline"]) == 0
    assert "wandb: offline run in" in capsys.readouterr().out
    assert len(list((tmp_path / "on" / "wandb").glob("offline-run-*"))) == 1
    # Without a flag (auto) the environment still decides, as W&B users expect; so it does for a trial's config.
    assert resolve_mode("auto", {"WANDB_MODE": "offline"}, explicit=True) == "offline"
    assert resolve_mode("offline", {"WANDB_MODE": "disabled"}) == "disabled"
