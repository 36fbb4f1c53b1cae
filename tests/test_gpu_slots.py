"""GPU slots for trials that run at once: the assignment on injected device counts (no CUDA here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training.common.errors import ConfigError
from training.models import gpu_slots
from training.models.gpu_slots import VISIBLE, apply_gpu_slot, visible_gpus
from training.models.gpu_slots import gpu_slots as slots

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("n", [4, 8])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_k_trials_on_n_gpus_get_n_over_k_adjacent_gpus_each(n, k):
    gpus = visible_gpus({}, n)
    got = slots(gpus, k)
    assert len(got) == k and all(len(slot) == n // k for slot in got)
    assert [gpu for slot in got for gpu in slot] == [str(i) for i in range(n)]  # disjoint, every GPU used
    if (n, k) == (8, 4):
        assert got == [("0", "1"), ("2", "3"), ("4", "5"), ("6", "7")]


@pytest.mark.parametrize(("n", "k"), [(8, 3), (4, 8)])
def test_gpus_that_do_not_split_evenly_are_a_config_error(n, k):
    with pytest.raises(ConfigError, match=rf"{k} trials at once cannot have {n} GPU\(s\) .* in equal shares"):
        slots(visible_gpus({}, n), k)


def test_a_schedulers_allocation_is_what_gets_split():
    """Under SLURM (or any CUDA_VISIBLE_DEVICES) the slots come from the allocation, not from the machine."""
    assert slots(visible_gpus({VISIBLE: "4,5,6,7"}, 8), 2) == [("4", "5"), ("6", "7")]
    environ = {VISIBLE: "4,5,6,7"}
    assert apply_gpu_slot(1, device_count=8, environ=environ) == ["4", "5", "6", "7"]
    assert environ == {VISIBLE: "4,5,6,7"}  # one trial at a time: left as the scheduler set it


def test_no_gpu_means_no_slot(tmp_path):
    environ: dict[str, str] = {}
    assert apply_gpu_slot(4, device_count=0, environ=environ, lock_dir=tmp_path) is None and environ == {}


CLAIM = """
import sys
from pathlib import Path
from training.models.gpu_slots import apply_gpu_slot
environ = {}
try:
    print(apply_gpu_slot(int(sys.argv[1]), device_count=int(sys.argv[2]), environ=environ, lock_dir=Path(sys.argv[3])),
          environ, flush=True)
except Exception as err:
    print("error:", err, flush=True)
sys.stdin.read()  # hold the slot until the test lets go
"""


def _claim(k: int, n: int, lock_dir: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", CLAIM, str(k), str(n), str(lock_dir)], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return proc, proc.stdout.readline().strip()


def test_trials_at_once_claim_different_slots_and_a_dead_ones_slot_is_free_again(tmp_path):
    first, a = _claim(2, 4, tmp_path)
    second, b = _claim(2, 4, tmp_path)
    third, c = _claim(2, 4, tmp_path)
    assert a == "['0', '1'] {'CUDA_VISIBLE_DEVICES': '0,1'}" and b == "['2', '3'] {'CUDA_VISIBLE_DEVICES': '2,3'}"
    assert c.startswith("error: every GPU slot (2) is held by a running trial on this machine")
    for proc in (first, third):
        proc.communicate("")
    fourth, d = _claim(2, 4, tmp_path)  # the first process ended: its slot is free
    assert d == a
    for proc in (second, fourth):
        proc.communicate("")


def test_a_process_keeps_its_slot_for_its_next_trial(tmp_path, monkeypatch):
    """CUDA cannot move to other GPUs once started: a joblib worker's next trial gets the slot it had."""
    monkeypatch.setattr(gpu_slots, "_held", None)
    environ: dict[str, str] = {}
    assert apply_gpu_slot(4, device_count=8, environ=environ, lock_dir=tmp_path) == ["0", "1"]
    del environ[VISIBLE]
    assert apply_gpu_slot(4, device_count=8, environ=environ, lock_dir=tmp_path) == ["0", "1"]
    assert environ == {VISIBLE: "0,1"}
    gpu_slots._held[1].close()
