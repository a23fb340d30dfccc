"""Comments on review decisions: anyone who may see a decision comments on it, and reads its
comments. A decision on a sample assigned blind is hidden, with its comments, from a reviewer
who has not decided the sample yet (see `assignments`); the lead and the job's adjudicators see
every one.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.services import InvalidParameterError, NotFoundError, PermissionDeniedError, assignments
from core.services.decisions import Reviewer
from core.store.models import Adjudicator, Assignment, Dataset, Decision, DecisionComment

MAX_COMMENT_LENGTH = 4_000


def add_comment(session: Session, author: Reviewer, decision_id: int, text: str) -> DecisionComment:
    """A comment by `author` on a decision they may see."""
    text = text.strip()
    if not 0 < len(text) <= MAX_COMMENT_LENGTH:
        raise InvalidParameterError(f"a comment has 1 to {MAX_COMMENT_LENGTH} characters")
    decision = _visible_decision(session, author, decision_id)
    comment = DecisionComment(decision_id=decision.id, author=author.name, text=text)
    session.add(comment)
    session.flush()
    return comment


def decision_comments(session: Session, viewer: Reviewer, decision_id: int) -> list[DecisionComment]:
    _visible_decision(session, viewer, decision_id)
    return comments_of(session, [decision_id]).get(decision_id, [])


def comments_of(session: Session, decision_ids: Collection[int]) -> dict[int, list[DecisionComment]]:
    """The comments on each decision, oldest first."""
    found: dict[int, list[DecisionComment]] = {}
    if not decision_ids:
        return found
    statement = (
        select(DecisionComment)
        .where(DecisionComment.decision_id.in_(list(decision_ids)))
        .order_by(DecisionComment.id)
    )
    for comment in session.scalars(statement):
        found.setdefault(comment.decision_id, []).append(comment)
    return found


def _visible_decision(session: Session, viewer: Reviewer, decision_id: int) -> Decision:
    """The decision, when the viewer may see it: their own, or not blind, or they decided the
    sample too, or they adjudicate its job."""
    decision = session.scalar(
        select(Decision).join(Dataset).where(Decision.id == decision_id, Dataset.owner_id == viewer.owner_id)
    )
    if decision is None:
        raise NotFoundError(f"decision {decision_id} not found")
    if decision.reviewer == viewer.name or assignments.is_lead(session, viewer):
        return decision
    on_sample = (Assignment.dataset_id == decision.dataset_id, Assignment.sample_id == decision.sample_id)
    if not _counted(session, Assignment, *on_sample, Assignment.blind):
        return decision
    own = _counted(
        session,
        Decision,
        Decision.dataset_id == decision.dataset_id,
        Decision.sample_id == decision.sample_id,
        Decision.reviewer == viewer.name,
        Decision.undone_at.is_(None),
    )
    adjudicates = decision.job_id is not None and session.get(Adjudicator, (decision.job_id, viewer.name)) is not None
    if own or adjudicates:
        return decision
    raise PermissionDeniedError(f"decision {decision_id} is on a blind sample you have not decided yet")


def _counted(session: Session, model: type, *conditions: Any) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*conditions))
