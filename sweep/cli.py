"""Command-line fix-ups that must happen before Hydra composes the config.

Two Hydra behaviours get in the way of ``python -m sweep +level=4``:
- the override value ``4`` parses as an int, and Hydra 1.3 refuses non-string
  config-group choices ("Config group override must be a string or a list.
  Got int"); quoting it (``+level='4'``) is the documented way round, so we quote;
- an unknown option (``+level=7``, ``model=qwen9``) is a multi-line composition
  error; a user deserves one line naming the valid options of that group.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

from training.common.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUP = "level"


def override_key(line: str) -> str:
    """``+level='1'`` -> ``level``: what an override sets, whatever its prefix (``+`` adds, ``~`` deletes)."""
    return str(line).partition("=")[0].lstrip("+~")


def available_options(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The options of config group ``group`` (a folder of ``conf/``), or [] when there is no such group."""
    return sorted(path.stem for path in (conf_dir / group).glob("*.yaml"))


def available_levels(conf_dir: Path = CONF_DIR) -> list[str]:
    return available_options(GROUP, conf_dir)


def _parse(arg: str, conf_dir: Path) -> tuple[Override, str] | None:
    """The override and its config group (``model@teacher.model`` -> ``model``), for our own groups only."""
    if "=" not in arg or arg.startswith("-"):
        return None  # a Hydra flag (-m, --cfg job, ...) or a deletion
    try:
        (override,) = OverridesParser.create().parse_overrides([arg])
    except HydraException:
        return None  # Hydra will report its own syntax error
    group = override.key_or_group.split("@")[0]
    # Dotted keys are values (data.n_train=5); hydra/... groups are Hydra's own.
    if override.is_delete() or "." in group or "/" in group or not (conf_dir / group).is_dir():
        return None
    return override, group


def _values(override: Override) -> list[str]:
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


SWEEPER_PREFIX = "hydra.sweeper."
SUBMITIT_LAUNCHERS = ("slurm", "slurm_local", "submitit_slurm", "submitit_local")


def check_launcher_override(arg: str) -> None:
    """``hydra/launcher=slurm`` without the ``slurm`` extra: one line saying what to install, instead of Hydra's
    list of the launchers it has."""
    import importlib.util

    if override_key(arg) != "hydra/launcher" or "=" not in arg:
        return
    if arg.split("=", 1)[1].strip() in SUBMITIT_LAUNCHERS and \
            importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        raise ConfigError(f"{arg} needs hydra-submitit-launcher: pip install -e '.[slurm]'")


def check_sweeper_override(arg: str) -> None:
    """``hydra.sweeper.<field>=value`` against the sweeper's typed settings: one line instead of Hydra's
    multi-line merge error (``n_trials=abc``). Nested keys (``params.x``, ``sampler_kwargs.x``) are the
    sweeper's own to check."""
    if not override_key(arg).startswith(SWEEPER_PREFIX) or "=" not in arg:
        return
    try:
        (override,) = OverridesParser.create().parse_overrides([arg])
    except HydraException:
        return  # Hydra reports its own syntax error
    name = override.key_or_group[len(SWEEPER_PREFIX):]
    if "." in name or override.is_sweep_override() or override.is_delete():
        return
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from hydra_plugins.cot_pareto_sweeper.config import ParetoSweeperConf

    settings = OmegaConf.structured(ParetoSweeperConf)
    if name not in settings:
        raise ConfigError(f"hydra.sweeper.{name} is not a setting of the pareto_optuna sweeper "
                          f"(settings: {', '.join(key for key in settings if not key.startswith('_'))})")
    try:
        OmegaConf.merge(settings, {name: override.value()})
    except OmegaConfBaseException as err:
        raise ConfigError(f"hydra.sweeper.{name}={override.get_value_element_as_str()}: "
                          f"{str(err).splitlines()[0]}") from None


def prepare_overrides(argv: Sequence[str], conf_dir: Path = CONF_DIR) -> list[str]:
    """``argv`` with level overrides checked and quoted; ConfigError for an unknown level or option, or a
    sweeper setting of the wrong type."""
    prepared = []
    for arg in argv:
        check_sweeper_override(arg)
        check_launcher_override(arg)
        parsed = _parse(arg, conf_dir)
        if parsed is None:
            prepared.append(arg)
            continue
        override, group = parsed
        try:
            values = [value.strip("'\"") for value in _values(override)]
        except HydraException:
            prepared.append(arg)  # e.g. glob(): Hydra expands and validates it
            continue
        valid = available_options(group, conf_dir)
        unknown = [value for value in values if value not in valid and value != "null"]
        if group == GROUP and unknown:
            raise ConfigError(f"unknown level {unknown[0]!r}: valid levels are {', '.join(valid)} (select one with +level=N)")
        if unknown:
            raise ConfigError(f"unknown {group} {unknown[0]!r}: valid options are {', '.join(valid)}")
        # Quoted, so a numeric choice (+level=4) stays a string for Hydra.
        prepared.append(f"{override.get_key_element()}=" + ",".join(value if value == "null" else f"'{value}'"
                                                                   for value in values))
    return prepared


def compose_config(*overrides: str):
    """The real config, composed the way ``python -m sweep`` composes it (for tests, benchmarks, notebooks)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=prepare_overrides(list(overrides)))
