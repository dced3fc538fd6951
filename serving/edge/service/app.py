"""The site's web pages and API (FastAPI, server-rendered: no build step): the worklist, newest
first and filterable by status; a study page with the key slices and the verdict form; a JSON API
of the same; /metrics for Prometheus; and the OHIF viewer over the PACS. All of it behind the
service's authentication, except /healthz."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ctscreen.imaging.synth import SUBTYPES
from serving.edge.service.auth import AuthenticationMiddleware, Authenticator
from serving.edge.service.store import Status, Study

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
API_FIELDS = ("id", "study_uid", "patient_id", "accession", "study_date", "status", "reason", "probability", "positive",
              "threshold", "lesion_ml", "lung_ml", "model_name", "model_version", "served_by", "seg_uid", "sr_uid",
              "verdict", "verdict_finding", "missed_lesions")


def create_app(service, viewer=None) -> FastAPI:
    """``service``: an ``EdgeService``; ``viewer``: the OHIF viewer's router, when it is installed."""
    from serving.edge.service.service import VerdictError

    config = service.config
    app = FastAPI(title=f"ctscreen edge — {config.site}", docs_url=None, redoc_url=None, openapi_url=None)

    def page(request: Request, template: str, **context):
        return TEMPLATES.TemplateResponse(request, template, {"site": config.site, "user": request.scope.get("user"), **context})

    def screened_study(study_id: int) -> Study:
        study = service.store.study(study_id)
        if study is None:
            raise HTTPException(404, f"no study {study_id}")
        return study

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/", response_class=HTMLResponse)
    def worklist(request: Request, status: str | None = None):
        status = status if status in {s.value for s in Status} else None
        return page(request, "worklist.html", studies=service.store.studies(status), status=status, statuses=[s.value for s in Status])

    @app.get("/studies/{study_id}", response_class=HTMLResponse)
    def study_page(request: Request, study_id: int):
        study = screened_study(study_id)
        depth = sum(1 for i in _instances(service, study_id) if i.series_uid == study.series_uid)
        default = "covid" if study.positive else "healthy"
        return page(request, "study.html", s=study, slices=study.json_field("key_slices") or [], depth=depth,
                    findings=SUBTYPES, default_finding=study.verdict_finding or default)

    @app.get("/studies/{study_id}/slices/{z}.png")
    def key_slice(study_id: int, z: int):
        study = screened_study(study_id)
        if z not in (study.json_field("key_slices") or []):
            raise HTTPException(404, f"slice {z} is not a key slice of study {study_id}")
        path = service.screener.results_dir(study_id) / f"slice_{z:04d}.png"
        return Response(path.read_bytes(), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/studies/{study_id}/verdict")
    def verdict(request: Request, study_id: int, verdict: str = Form(...), finding: str = Form(...),
                missed_lesions: str | None = Form(None), note: str | None = Form(None)):
        screened_study(study_id)
        try:
            service.record_verdict(study_id, verdict, finding, missed_lesions == "yes", note, request.scope["user"])
        except VerdictError as error:
            raise HTTPException(400, str(error)) from None
        return RedirectResponse(f"/studies/{study_id}", status_code=303)

    @app.get("/api/studies")
    def api_studies(status: str | None = None):
        return [_fields(s) for s in service.store.studies(status)]

    @app.get("/api/studies/{study_id}")
    def api_study(study_id: int):
        study = screened_study(study_id)
        return {**_fields(study), "timings": study.json_field("timings"), "inputs": study.json_field("inputs")}

    @app.get("/metrics")
    def metrics():
        return Response(service.metrics.exposition(), media_type="text/plain; version=0.0.4")

    if viewer is not None:
        app.include_router(viewer)
    app.add_middleware(AuthenticationMiddleware, authenticator=Authenticator(config.web.users_file, config.web.tokens_file),
                       realm=f"ctscreen {config.site}")
    return app


def _instances(service, study_id: int):
    with service.store.session() as session:
        return list(session.get(Study, study_id).instances)


def _fields(study: Study) -> dict:
    return {name: getattr(study, name) for name in API_FIELDS} | {
        "last_arrival": study.last_arrival.isoformat() + "Z", "completed_at": study.completed_at.isoformat() + "Z" if study.completed_at else None}
