"""Prose as the commands print it: wrapped to the terminal's width, numbers and paths never split."""
from __future__ import annotations

import shutil
import textwrap


def wrapped(text: str, indent: str = "") -> str:
    """``text`` wrapped to the terminal's width less one column (80 when it has none), continuation lines indented
    four more than ``indent``; a word (a number, a path) is never split."""
    width = shutil.get_terminal_size((80, 24)).columns - 1
    return textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent + "    ",
                         break_on_hyphens=False, break_long_words=False)
