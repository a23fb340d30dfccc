"""What reviewers' verdicts make known about a label: the flag of one verdict, read against the
label a sample has now, and the flag several reviewers agree on."""

from __future__ import annotations

import pytest

from core.verdicts import REMOVED, Verdict, agreed_flag, outcome, verdict_flag


@pytest.mark.parametrize(
    ("verdict", "judged", "corrected", "label", "flag"),
    [
        (Verdict.KEEP, "cat", None, "cat", False),
        (Verdict.RELABEL, "cat", "dog", "cat", True),
        (Verdict.REMOVE, "cat", None, "cat", True),
        # the label changed since (a corrected dataset version, an injected-noise job)
        (Verdict.RELABEL, "cat", "dog", "dog", False),
        (Verdict.RELABEL, "cat", "dog", "bird", None),
        (Verdict.KEEP, "cat", None, "dog", None),
        (Verdict.REMOVE, "cat", None, "dog", True),
    ],
)
def test_a_verdict_flags_the_label_it_judged(verdict, judged, corrected, label, flag):
    assert verdict_flag(verdict, judged, corrected, label) is flag


def test_outcome_is_the_label_the_sample_ends_up_with():
    assert outcome(Verdict.KEEP, "cat", None) == "cat"
    assert outcome(Verdict.RELABEL, "cat", "dog") == "dog"
    assert outcome(Verdict.REMOVE, "cat", None) == REMOVED
    with pytest.raises(ValueError, match="corrected label"):
        outcome(Verdict.RELABEL, "cat", None)


@pytest.mark.parametrize(
    ("flags", "agreed"),
    [
        ([], None),
        ([None], None),
        ([True], True),
        ([False, None], False),
        ([True, True], True),
        ([True, False], None),
    ],
)
def test_reviewers_make_a_flag_known_where_they_agree(flags, agreed):
    assert agreed_flag(flags) is agreed
