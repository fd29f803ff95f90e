"""The errors a user can fix, shared by the pipelines and the trainers (no TensorFlow import)."""

from __future__ import annotations

import re
from typing import Any


class DataError(ValueError):
    """A data problem the user must fix (bad split, unreadable file, empty folder, ...)."""


class SettingError(ValueError):
    """A setting that cannot be used: names the setting, the value and what is accepted.

    `trainers.config.ConfigError` (a training setting) and `pipelines.tuning.SearchError` (a
    search setting) are its two kinds; a program prints `flag_message()`.
    """

    def __init__(self, setting: str, value: Any, reason: str):
        self.setting, self.value, self.reason = setting, value, reason
        super().__init__(f"{setting}={value!r}: {reason}")

    def flag_message(self) -> str:
        """The same, spelled as the command-line flag (a list as the flag takes it, comma-separated)."""
        value = ",".join(map(str, self.value)) if isinstance(self.value, (list, tuple)) else self.value
        return f"--{self.setting}={'' if value is None else value}: {self.reason}"


def op_error_text(error) -> str:
    """The first line of a TensorFlow op error, without the graph-function and op names TF wraps
    it in: "{{function_node ...}} Invalid PNG data, size 12432 [Op:DecodeImage]" -> the middle."""
    text = str(getattr(error, "message", error)).strip().splitlines()
    return re.sub(r"^\{\{[^}]*\}\}\s*|\s*\[Op:\w+\].*$", "", text[0] if text else "")
