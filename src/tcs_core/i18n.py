"""User-facing text in Vietnamese (the default) with an English option.

Each module keeps its own table ``{key: {"vi": ..., "en": ...}}``; ``message`` picks the text
for a language and fills its ``{placeholders}``, so the rule (anything but ``"en"`` reads
Vietnamese) lives in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

__all__ = ["Messages", "message"]

Messages: TypeAlias = Mapping[str, Mapping[str, str]]


def message(table: Messages, key: str, lang: str, **values: Any) -> str:
    """The text of ``key`` in ``lang`` (Vietnamese unless ``"en"``), with ``values`` filled in."""
    text = table[key]["en" if lang == "en" else "vi"]
    return text.format(**values) if values else text
