"""Prose as the commands print it: wrapped to the terminal's width, numbers and paths never split."""
from __future__ import annotations

import re
import shutil
import textwrap

# control characters but tab and newline: a name from a file (a class, a column, a file name) or the database must
# not drive the terminal (ESC]0;...BEL sets its title, ESC[2J clears it)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with its control characters written out (``\\x1b``), as the terminal is to show it."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def visible_line(text: str) -> str:
    """``visible(text)`` with its line breaks and tabs written out too (``\\n``, ``\\t``): a table cell on one line."""
    return visible(text).replace("\n", "\\n").replace("\t", "\\t")


def wrapped(text: str, indent: str = "") -> str:
    """``text`` wrapped to the terminal's width less one column (80 when it has none; a word a line where $COLUMNS
    says 1 or less), continuation lines indented four more than ``indent``; a word (a number, a path) is never split;
    control characters written out."""
    width = max(1, shutil.get_terminal_size((80, 24)).columns - 1)  # COLUMNS=1: textwrap refuses a width of 0
    return textwrap.fill(visible(text), width, initial_indent=indent, subsequent_indent=indent + "    ",
                         break_on_hyphens=False, break_long_words=False)
