"""Files that ship inside pip packages (data sets, tokenizers, small models): found without any hub access."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from training.common.errors import ConfigError


def package_dir(package: str, ships: str, setting: str | None = None) -> Path:
    """The installed folder of ``package``; a ConfigError naming what it ships (and the setting naming it) if absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        named = f"{setting}={package!r}" if setting else f"package {package!r}"
        raise ConfigError(f"{named} is not installed (run `make setup`): it ships {ships}")
    return Path(spec.submodule_search_locations[0])
