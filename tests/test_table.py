"""The run summary reads metrics.json files, never objects in memory."""

import json

import pytest

from analysis.__main__ import main
from analysis.table import format_table, table_rows
from training.common.errors import CotParetoError


def write(path, **metrics):
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(metrics))


def test_table_lists_baseline_first_then_levels(tmp_path, capsys):
    write(tmp_path / "1_L2", status="completed", level=2, adapter="auto", accuracy=0.25, accuracy_ci=[0.1, 0.4],
          mean_think_tokens=12.0, n_train=128, train_seconds=130.0, eval_seconds=13.0)
    write(tmp_path / "0_L1", status="failed", level=1, adapter="auto", error="TrainingError: loss became nan")
    write(tmp_path / "base_L1", status="completed", level=1, adapter="none", accuracy=0.0, accuracy_ci=[0.0, 0.06],
          mean_think_tokens=50.4, n_train=0, eval_seconds=49.0)
    rows = table_rows(tmp_path)
    assert [(r["adapter"], r["level"]) for r in rows] == [("none", 1), ("auto", 1), ("auto", 2)]
    lines = format_table(rows).splitlines()
    assert lines[2].startswith("base (L1 prompt) completed    0.000  [0.000, 0.060]      50.4       0       -")
    assert lines[3].startswith("L1               failed") and "error: TrainingError: loss became nan" in lines[4]
    assert lines[5].split() == ["L2", "completed", "0.250", "[0.100,", "0.400]", "12.0", "128", "130", "13"]
    assert main(["table", str(tmp_path)]) == 0 and "L2" in capsys.readouterr().out


def test_the_no_think_record_of_a_trial_is_its_own_line(tmp_path):
    write(tmp_path / "L4", status="completed", level=4, adapter="auto", accuracy=0.3, mean_think_tokens=9.0,
          eval={"thinking": "on"})
    write(tmp_path / "L4" / "no_think", status="completed", level=4, adapter="auto", accuracy=0.2,
          mean_think_tokens=0.0, eval={"thinking": "off"})
    lines = format_table(table_rows(tmp_path)).splitlines()
    assert [line.split("  ")[0] for line in lines[2:]] == ["L4", "L4 no-think"]
    assert lines[3].split()[2:5] == ["completed", "0.200", "-"] and lines[3].split()[5] == "0.0"


def test_empty_or_missing_dir_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(CotParetoError, match="no metrics.json"):
        table_rows(tmp_path)
    assert main(["table", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_every_reader_takes_a_corrupt_or_missing_metrics_file_in_its_stride(tmp_path):
    from analysis.trials import collect_dir
    from sweep.run_record import read_metrics
    from sweep.search.summary_csv import row_from_run_dir

    write(tmp_path / "0_L4", status="completed", level=4, adapter="auto", accuracy=0.5, accuracy_ci=[0.2, 0.8],
          mean_think_tokens=9.0, n_eval=4)
    (tmp_path / "1_L5").mkdir()
    (tmp_path / "1_L5" / "metrics.json").write_text('{"status": "compl')  # a disk that filled up mid-write
    (tmp_path / "2_L3" / ".hydra").mkdir(parents=True)  # started, no metrics yet
    (tmp_path / "2_L3" / ".hydra" / "config.yaml").write_text("seed: 42\n")
    assert read_metrics(tmp_path / "2_L3") == {"status": "running"}
    corrupt = read_metrics(tmp_path / "1_L5")
    assert corrupt["status"] == "unreadable" and "1_L5/metrics.json" in corrupt["error"]
    assert row_from_run_dir(tmp_path / "1_L5")["state"] == "unreadable"
    assert sorted(row["status"] for row in table_rows(tmp_path)) == ["completed", "unreadable"]
    collection = collect_dir(tmp_path)
    assert len(collection.trials) == 1 and collection.skipped == {"unreadable": 1, "incomplete": 1}
