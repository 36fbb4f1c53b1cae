"""Registers the retrying submitit launchers' schemas (``hydra/launcher=cot_submitit_slurm|cot_submitit_local``).

Users select ``hydra/launcher=slurm`` or ``slurm_local`` (``conf/hydra/launcher/``), which extend these with the
project's cluster defaults; ``retries`` is the one field added to hydra-submitit-launcher's own.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

try:
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
except ImportError:  # the slurm extra is not installed: nothing to register
    SlurmQueueConf = None

if SlurmQueueConf is not None:
    _MODULE = "hydra_plugins.cot_pareto_launcher.submitit_retry"

    @dataclass
    class RetryingSlurmConf(SlurmQueueConf):
        _target_: str = f"{_MODULE}.SlurmLauncher"
        # How many times a job that ends without a result (pre-empted, timed out, killed) is submitted again.
        retries: int = 2

    @dataclass
    class RetryingLocalConf(LocalQueueConf):
        _target_: str = f"{_MODULE}.LocalLauncher"
        retries: int = 2

    store = ConfigStore.instance()
    store.store(group="hydra/launcher", name="cot_submitit_slurm", node=RetryingSlurmConf, provider="cot-pareto")
    store.store(group="hydra/launcher", name="cot_submitit_local", node=RetryingLocalConf, provider="cot-pareto")
