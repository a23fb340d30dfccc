"""Reviewers' verdicts on suspected mislabels, and what they make known about a sample's label.

A reviewer looks at a sample under the label it was given (the *judged* label) and decides:
- keep: the judged label is right;
- relabel to X: the judged label is wrong and X is right;
- remove: the sample is ambiguous or unusable, whatever its label.

A verdict is evidence about one label, so it is read against the label a sample has now (a later
dataset version may have corrected it, an injected-noise job trains on another one):
`verdict_flag` says whether that label is mislabeled (True), clean (False) or not judged (None).
Several reviewers make a label known only where they agree (`agreed_flag`); they conflict where
they would leave the sample with different labels (`outcome`; removal counts as one).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

REMOVED = "(removed)"


class Verdict(StrEnum):
    KEEP = "keep"
    RELABEL = "relabel"
    REMOVE = "remove"


def verdict_flag(verdict: Verdict, judged_label: str, corrected_label: str | None, label: str) -> bool | None:
    """Whether `label` is mislabeled according to the verdict; None when the verdict did not judge it."""
    if verdict is Verdict.REMOVE:
        return True
    if label == judged_label:
        return verdict is Verdict.RELABEL
    if verdict is Verdict.RELABEL and label == corrected_label:
        return False
    return None


def outcome(verdict: Verdict, judged_label: str, corrected_label: str | None) -> str:
    """The label the sample ends up with, or `REMOVED`."""
    if verdict is Verdict.REMOVE:
        return REMOVED
    if verdict is Verdict.RELABEL:
        if corrected_label is None:
            raise ValueError("a relabel verdict needs the corrected label")
        return corrected_label
    return judged_label


def agreed_flag(flags: Iterable[bool | None]) -> bool | None:
    """The flag every verdict that judged the label gives it; None if none did or they disagree."""
    known = {flag for flag in flags if flag is not None}
    return known.pop() if len(known) == 1 else None
