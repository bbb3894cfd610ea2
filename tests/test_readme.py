"""The README's sample of search auto reads as the command prints it."""
from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_auto_samples_final_row_is_the_chosen_mean():
    # search auto's table gives the final stage's best configuration mean, the number "chosen" repeats
    row = re.search(r"^digits/final +\d+ +\d+ +\d+ +[\d.]+ +([\d.]+) \(best mean\)$", README, re.M)
    chosen = re.search(r"^  digits/final: value ([\d.]+) \+- ", README, re.M)
    assert row and chosen
    assert row[1] == chosen[1]
