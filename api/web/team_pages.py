"""The team review's page: /ui/jobs/N/adjudicate, where the lead or an adjudicator resolves the
samples the job's reviewers disagree on (its script reads /jobs/N/conflicts). The job page's
"Team" section (templates/_team.html, static/team.js) reads /jobs/N/team."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import PageViewer, SessionDep
from api.schemas.common import DbId
from api.web.pages import _job, _not_found, _page, _to_login

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/jobs/{job_id}/adjudicate")
def adjudicate_page(job_id: DbId, request: Request, viewer: PageViewer, session: SessionDep) -> Response:
    if viewer is None:
        return _to_login(request)
    job = _job(session, viewer, job_id)
    if job is None:
        return _not_found(request, viewer, job_id)
    version = job.dataset_version
    data = {"job_id": job.id, "class_names": version.class_names, "reviewer": viewer.reviewer}
    return _page(request, "adjudicate.html", viewer, job=job, data=data)
