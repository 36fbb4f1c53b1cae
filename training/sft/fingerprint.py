"""A cheap dataset fingerprint for the tokenizer that TRL passes to every ``Dataset.map``.

``datasets`` names each transformed dataset by hashing the transform's arguments, and TRL's SFTTrainer
passes the tokenizer to its tokenizing ``map``. Hashing pickles the tokenizer whole: 1.2 s for Qwen3's
(its vocabulary and merges as Python objects), paid for the training set and again for a validation set,
in every trial. The SFT sets here are built in memory (``Dataset.from_list``), which ``datasets`` never
caches on disk, so the fingerprint only names them: an identity that is cheap and stable does as well.
The reducer is registered in ``datasets``' own hashing pickler only; nothing else pickles with it.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

log = logging.getLogger(__name__)


def tokenizer_identity(tokenizer: Any) -> str:
    """What tells two tokenizers apart for a dataset name: class, source, vocabulary size, chat template."""
    template = hashlib.sha256(str(getattr(tokenizer, "chat_template", "") or "").encode()).hexdigest()[:16]
    return f"{type(tokenizer).__name__}:{getattr(tokenizer, 'name_or_path', '')}:{len(tokenizer)}:{template}"


def _save_identity(pickler: Any, obj: Any) -> None:
    pickler.save_reduce(str, (tokenizer_identity(obj),), obj=obj)


def register_cheap_fingerprint(tokenizer: Any) -> None:
    """Hash ``tokenizer``'s class by :func:`tokenizer_identity` in ``datasets``' fingerprints (a no-op if the
    private hook that ``datasets`` 5 uses is gone). Replaces the reducer ``datasets`` registers for the class
    the first time it hashes one, so it takes effect whatever was hashed before."""
    try:
        from datasets.utils._dill import Pickler
    except ImportError:  # a datasets release without it: fingerprints stay exact, only slower
        return
    Pickler.dispatch[type(tokenizer)] = _save_identity
