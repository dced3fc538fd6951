"""The viewer's routes for the edge service: OHIF under ``prefix`` and the PACS's DICOMweb behind it.

Under the prefix (``/viewer`` by default; the origin's root stays the edge's own worklist pages):

- ``app-config.js``: generated (``ohif.app_config``), pointing OHIF at the proxy below;
- ``dicom-web/...`` and ``wado``: the PACS, read only, through ``PacsProxy``;
- anything else: dist/'s files, rewritten for the prefix where they name the root; a path naming
  no file answers index.html, for OHIF's own router (``<prefix>/viewer?StudyInstanceUIDs=...``),
  unless it names a missing asset (a chunk, an image), which answers 404 rather than HTML.

Every answer carries Cross-Origin-Opener-Policy/Embedder-Policy, which give the page
SharedArrayBuffer (OHIF's decoders and volume rendering need it). Methods other than GET and HEAD
answer 405. Authenticating physicians is the edge service's middleware's business, not these routes'.
"""

from __future__ import annotations

import mimetypes
import re
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from serving.viewer.ohif import PrefixedBuild, app_config, check_prefix
from serving.viewer.proxy import PacsProxy

ISOLATION = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
MEDIA_TYPES = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript", ".map": "application/json",
               ".woff2": "font/woff2"}
ASSET_SUFFIXES = {".js", ".mjs", ".css", ".wasm", ".map", ".json", ".png", ".jpg", ".svg", ".ico", ".woff", ".woff2",
                  ".ttf", ".html", ".txt", ".xml"}
# webpack's content hash in a file name: that name's content never changes, while npm gives every
# file of the package the same old mtime, so the others are revalidated lest an upgrade go unseen
HASHED = re.compile(r"(^|\.)[0-9a-f]{16}\.")
FOREVER = "public, max-age=31536000, immutable"
DICOMWEB_PATH = re.compile(r"^(/[A-Za-z0-9._,-]*)*$")  # UIDs, resource names, frame lists ("frames/1,2")


def _media_type(path: Path) -> str:
    return MEDIA_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _isolated(response: Response) -> Response:
    response.headers.update(ISOLATION)
    return response


def viewer_router(dist: str | Path | None, pacs_dicomweb_url: str, pacs_auth: tuple[str, str] | None, prefix: str = "/viewer",
                  pacs_wado_url: str | None = None) -> APIRouter:
    """The viewer's routes, to ``app.include_router`` into the edge service's FastAPI app (whose
    lifespan then closes the proxy's connections). ``dist``: the OHIF build (None: infra/ohif/dist);
    ``pacs_dicomweb_url``: the PACS's DICOMweb root (e.g. Orthanc's ``.../dicom-web``) and
    ``pacs_auth`` its (user, password); ``pacs_wado_url``: its WADO-URI endpoint (default:
    ``/wado`` at the DICOMweb server's root, as Orthanc has it)."""
    prefix = check_prefix(prefix)
    build = PrefixedBuild(dist, prefix)
    config = app_config(prefix)
    proxy = PacsProxy(pacs_dicomweb_url, pacs_auth, pacs_wado_url)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        await proxy.aclose()

    router = APIRouter(lifespan=lifespan)

    def public_dicomweb_url(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{prefix}/dicom-web"

    async def serve_config(request: Request) -> Response:
        return _isolated(Response(config, media_type="text/javascript", headers={"Cache-Control": "no-cache"}))

    async def dicomweb(request: Request) -> Response:
        rest = request.path_params["rest"]  # "" or "/studies/...": never a way out of the PACS's DICOMweb root
        if not DICOMWEB_PATH.match(rest) or any(part in (".", "..") for part in rest.split("/")):
            return _isolated(PlainTextResponse(f"not a DICOMweb path: {rest!r}", status_code=404))
        return _isolated(await proxy.forward(request, proxy.dicomweb_url + rest, public_dicomweb_url(request)))

    async def wado(request: Request) -> Response:
        return _isolated(await proxy.forward(request, proxy.wado_url, public_dicomweb_url(request)))

    async def static(request: Request) -> Response:
        relative = request.path_params.get("path", "")
        path = build.lookup(relative)
        if path is None:
            if PurePosixPath(relative).suffix.lower() in ASSET_SUFFIXES:
                return _isolated(PlainTextResponse(f"{prefix}/{relative} is not part of the viewer", status_code=404))
            path = build.index
        content = await run_in_threadpool(build.content, path)
        headers = {"Cache-Control": FOREVER if HASHED.search(path.name) else "no-cache"}
        if content is None:
            return _isolated(FileResponse(path, media_type=_media_type(path), headers=headers))
        return _isolated(Response(content, media_type=_media_type(path), headers=headers))

    router.add_route(f"{prefix}/app-config.js", serve_config, methods=["GET"], include_in_schema=False)
    router.add_route(f"{prefix}/dicom-web{{rest:path}}", dicomweb, methods=["GET"], include_in_schema=False)
    router.add_route(f"{prefix}/wado", wado, methods=["GET"], include_in_schema=False)
    router.add_route(prefix, static, methods=["GET"], include_in_schema=False)
    router.add_route(f"{prefix}/{{path:path}}", static, methods=["GET"], include_in_schema=False)
    return router
