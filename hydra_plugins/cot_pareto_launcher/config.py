"""Registers the retrying SLURM launcher's schema (``hydra/launcher=cot_submitit_slurm``).

Users select ``hydra/launcher=slurm`` or ``slurm_local`` (``conf/hydra/launcher/``), which extend it with the
project's cluster defaults; ``retries`` is the one field added to hydra-submitit-launcher's own. ``slurm_local``
takes the same settings and runs the jobs with submitit's local executor.
"""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

try:
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
except ImportError:  # the slurm extra is not installed: nothing to register
    SlurmQueueConf = None

if SlurmQueueConf is not None:

    @dataclass
    class RetryingSlurmConf(SlurmQueueConf):
        _target_: str = "hydra_plugins.cot_pareto_launcher.submitit_retry.SlurmLauncher"
        # How many times a job that ends without a result (pre-empted, timed out, killed) is submitted again.
        retries: int = 2

    ConfigStore.instance().store(group="hydra/launcher", name="cot_submitit_slurm", node=RetryingSlurmConf,
                                 provider="cot-pareto")
