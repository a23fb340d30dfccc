"""The team review's page: /ui/jobs/N/adjudicate, where the lead or an adjudicator resolves the
samples the job's reviewers disagree on (its script reads /jobs/N/conflicts). The job page's
"Team" section (templates/_team.html, static/team.js) reads /jobs/N/team."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import PageViewer, SessionDep
from api.schemas.common import DbId
from api.web.pages import _page, _viewed_job

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/jobs/{job_id}/adjudicate")
def adjudicate_page(job_id: DbId, request: Request, viewer: PageViewer, session: SessionDep) -> Response:
    job = _viewed_job(request, viewer, session, job_id)
    if isinstance(job, Response):
        return job
    version = job.dataset_version
    data = {"job_id": job.id, "class_names": version.class_names, "reviewer": viewer.reviewer}
    return _page(request, "adjudicate.html", viewer, job=job, data=data)
