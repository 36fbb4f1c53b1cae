"""The work of a trial, below its stages: data and levels, teachers, grading, models, SFT, evaluation, caches."""

import logging as _logging

# bitsandbytes warns on every CPU load that the optional `kernels` package (which fetches from a hub)
# is missing; its built-in CPU path works without it, so the advice only misleads here. Set before
# any module of ours can import bitsandbytes (peft and transformers import it too).
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
