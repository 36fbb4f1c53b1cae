"""Bad sweeper settings and storages that cannot be opened: one line, exit status 2, no trial, no secret.

Each case runs ``python -m sweep -m +search=smoke`` as a user does (about a second: the sweeper stops
before any trial imports the training stack).
"""

from __future__ import annotations

import re

import pytest

from hydra_plugins.cot_pareto_sweeper.config import ParetoSweeperConf
from sweep.search.storage import redact, storage_setting
from sweep.search.sweeper_settings import check_settings
from tests.faults.common import REPO, assert_no_secret, one_error_line, run_module
from training.common.errors import ConfigError

JOURNAL = "cannot write the journal file"
REFUSED = ('cannot use the study storage: connection failed: connection to server at "127.0.0.1", port 1 failed: '
           "Connection refused")
CASES = {
    "n_trials": (["hydra.sweeper.n_trials=-1"], "hydra.sweeper.n_trials=-1 must be a whole number of at least 1 "
                 "(the finished trials the study should end with)"),
    "sampler": (["hydra.sweeper.sampler=bogus"],
                "hydra.sweeper.sampler='bogus' is not one of tpe, nsgaii, random, grid, coordinate"),
    "interval": (["train.lora_r=interval(8,2)"], "search space train.lora_r: interval(8.0, 2.0) is empty"),
    "stale_after": (["hydra.sweeper.stale_after_seconds=10"], "hydra.sweeper.stale_after_seconds=10.0 must exceed "
                    "hydra.sweeper.heartbeat_seconds=30.0, which must be above 0"),
    "storage_env": (["hydra.sweeper.storage_env=COT_NO_SUCH_VARIABLE"], "hydra.sweeper.storage_env=COT_NO_SUCH_VARIABLE: "
                    "the environment variable COT_NO_SUCH_VARIABLE is not set (export it with the storage URL)"),
    "unreachable": (["hydra.sweeper.storage=postgresql://nouser@127.0.0.1:1/x"],
                    f"hydra.sweeper.storage=postgresql://nouser@127.0.0.1:1/x: {REFUSED}"),
    "password": (["hydra.sweeper.storage=postgresql://nouser:pw-not-shown@127.0.0.1:1/x"],
                 f"hydra.sweeper.storage=postgresql://nouser:***@127.0.0.1:1/x: {REFUSED}"),
    "scheme": (["hydra.sweeper.storage=foo://bar"], "hydra.sweeper.storage=foo://bar: not a storage URL (Can't load "
               "plugin: sqlalchemy.dialects:foo); use a journal file path, sqlite:///path/study.db or "
               "postgresql://user@host/db"),
    "sqlite": (["hydra.sweeper.storage=sqlite:////nonexistent-dir/x.db"],
               "hydra.sweeper.storage=sqlite:////nonexistent-dir/x.db: cannot use the study storage: unable to open "
               "database file"),
    "proc": (["hydra.sweeper.storage=/proc/cot-pareto/x.journal"],
             f"hydra.sweeper.storage=/proc/cot-pareto/x.journal: {JOURNAL}: "),  # the OS's reason follows
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_sweeper_setting_is_one_line(case, tmp_path):
    overrides, message = CASES[case]
    sweep_dir = tmp_path / "search"
    result = run_module("sweep", "-m", "+search=smoke", f"hydra.sweep.dir={sweep_dir}", *overrides, cwd=REPO)
    line = one_error_line(result)
    assert line == f"error: {message}" or (case == "proc" and line.startswith(f"error: {message}")), line
    assert not list(sweep_dir.glob("trial_*"))  # no trial started
    assert_no_secret("pw-not-shown", tmp_path)


def test_a_journal_under_a_file_names_the_file(tmp_path):
    (tmp_path / "plain").write_text("a file, not a directory\n")
    journal = tmp_path / "plain" / "study" / "x.journal"
    result = run_module("sweep", "-m", "+search=smoke", f"hydra.sweep.dir={tmp_path / 'search'}",
                        f"hydra.sweeper.storage={journal}", cwd=REPO)
    assert one_error_line(result) == (f"error: hydra.sweeper.storage={journal}: {JOURNAL}: "
                                      f"{tmp_path / 'plain'} is a file, not a directory")


def test_workers_print_a_shared_error_once(tmp_path):
    result = run_module("sweep.search.workers", "2", "+search=smoke", f"hydra.sweep.dir={tmp_path / 'search'}",
                        "hydra.sweeper.sampler=bogus", cwd=REPO)
    assert one_error_line(result) == ("error: hydra.sweeper.sampler='bogus' is not one of tpe, nsgaii, random, grid, "
                                      "coordinate")


def test_redact_hides_every_password_form():
    assert redact("postgresql://u:p%40ss@db.example:5432/study") == "postgresql://u:***@db.example:5432/study"
    assert redact("postgresql+psycopg://u:s3:cr/t@h/db") == "postgresql+psycopg://u:***@h/db"
    assert redact("postgresql://u@h/db?sslmode=require&password=x1") == "postgresql://u@h/db?sslmode=require&password=***"
    assert redact("x hydra.sweeper.storage='mysql://a:b@c/d' y") == "x hydra.sweeper.storage='mysql://a:***@c/d' y"
    for unchanged in ("postgresql://u@h/db", "sqlite:///tmp/s.db", "outputs/search/s/optuna.journal"):
        assert redact(unchanged) == unchanged


def test_storage_env_reads_the_url_from_the_environment():
    assert storage_setting(None, "DB", {"DB": " postgresql://u:p@h/db\n"}) == "postgresql://u:p@h/db"
    assert storage_setting("x.journal", None, {}) == "x.journal"
    with pytest.raises(ConfigError, match="not both"):
        storage_setting("x.journal", "DB", {"DB": "sqlite:///s.db"})


@pytest.mark.parametrize("change, message", [
    ({"n_trials": 0}, "n_trials=0 must be a whole number of at least 1"),
    ({"n_trials": None}, "n_trials is required unless sampler=grid"),
    ({"n_jobs": 0}, "n_jobs=0 must be at least 1, -1"),
    ({"n_workers": 0}, "n_workers=0 must be a whole number"),
    ({"heartbeat_seconds": 0, "stale_after_seconds": 10}, "must exceed hydra.sweeper.heartbeat_seconds=0"),
    ({"objectives": {"accuracy": "up"}}, "objectives.accuracy='up' is not one of maximize, minimize"),
    ({"sampler": "nsgaii", "sampler_kwargs": {"population_size": 1}}, "sampler_kwargs={'population_size': 1}"),
    ({"storage": "s.journal", "storage_env": "DB"}, "not both"),
])
def test_settings_are_checked_before_any_trial(change, message):
    settings = {**vars(ParetoSweeperConf()), "n_trials": 4, **change}
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_settings(settings)
    check_settings({**vars(ParetoSweeperConf()), "n_trials": 4})  # the defaults with a budget pass
