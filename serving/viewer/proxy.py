"""The edge's read-only DICOMweb proxy in front of the PACS, for the viewer in the browser.

The browser talks only to the edge service, which authenticates physicians itself. The proxy adds
the PACS's credentials to its own requests, so the PACS password never reaches a browser, and a
browser's credentials or cookies never reach the PACS: only the request headers named in
``FORWARDED_REQUEST`` go on, only those in ``FORWARDED_RESPONSE`` come back (never the PACS's
WWW-Authenticate, which would make the browser ask the physician for the PACS's password).

DICOMweb JSON names resources by absolute URL (RetrieveURL, BulkDataURI) on the PACS's own base
(Orthanc builds it from the Host it was asked by: the ``dicomweb_url`` given here); those are
rewritten to the proxy's base as the browser sees it, so that OHIF's follow-up requests come back
through the proxy. Everything else streams through untouched.

One change to requests: "," and "/" in the query string are sent unencoded. Both are legal as
they are in a query (RFC 3986), browsers' DICOMweb clients encode them ("includefield=00081030%2C
00080060", "contentType=application%2Fdicom"), and Orthanc 1.10's DICOMweb plugin reads them only
unencoded: without this it leaves the study description out of OHIF's study list.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import urlsplit, urlunsplit

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

log = logging.getLogger(__name__)

FORWARDED_REQUEST = ("accept", "content-type")
FORWARDED_RESPONSE = ("content-type", "content-length", "content-encoding", "content-disposition", "etag",
                      "last-modified", "cache-control")
JSON_TYPES = {"application/dicom+json", "application/json"}
UNENCODED = {"%2c": ",", "%2f": "/"}
KEEPALIVE_S = 0.5  # below Orthanc's own keep-alive (1 s), so that no request goes out on a connection it is closing


def sibling_wado_url(dicomweb_url: str) -> str:
    """WADO-URI at the DICOMweb server's root, where Orthanc's plugin answers it (``/wado``)."""
    scheme, netloc, *_ = urlsplit(dicomweb_url)
    return urlunsplit((scheme, netloc, "/wado", "", ""))


class PacsProxy:
    """Forwards the browser's DICOMweb reads to the PACS as the edge service, GET only."""

    def __init__(self, dicomweb_url: str, auth: tuple[str, str] | None, wado_url: str | None = None, timeout_s: float = 60.0):
        self.dicomweb_url = dicomweb_url.rstrip("/")
        self.wado_url = wado_url or sibling_wado_url(self.dicomweb_url)
        # trust_env off: an HTTP(S)_PROXY in the service's environment must not carry the PACS's credentials away;
        # no cookies kept: what one physician's request was given must not ride along with the next one's
        self.client = httpx.AsyncClient(auth=auth, timeout=httpx.Timeout(timeout_s, connect=5.0), trust_env=False,
                                        follow_redirects=False, cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
                                        limits=httpx.Limits(max_connections=32, keepalive_expiry=KEEPALIVE_S))

    async def aclose(self) -> None:
        await self.client.aclose()

    async def forward(self, request: Request, upstream_url: str, public_dicomweb_url: str) -> Response:
        """``request`` (GET or HEAD) sent to ``upstream_url`` with its query string, as a GET:
        Orthanc's DICOMweb answers HEAD with 404, and the server leaves out the body of a HEAD reply."""
        headers = {name: request.headers[name] for name in FORWARDED_REQUEST if name in request.headers}
        headers["accept-encoding"] = "identity"  # loopback: compressing buys nothing and would hide the JSON to rewrite
        query = re.sub("%2[cf]", lambda found: UNENCODED[found.group(0).lower()], request.url.query, flags=re.IGNORECASE)
        url = f"{upstream_url}?{query}" if query else upstream_url
        try:
            upstream = await self.client.send(self.client.build_request("GET", url, headers=headers), stream=True)
        except httpx.HTTPError as exc:
            log.warning("PACS request %s failed: %s: %s", upstream_url, type(exc).__name__, exc)
            return PlainTextResponse(f"the PACS cannot be reached ({type(exc).__name__})", status_code=502)
        if upstream.status_code in (401, 403):
            await upstream.aclose()
            log.error("the PACS at %s refused the edge service's credentials (HTTP %d)", self.dicomweb_url, upstream.status_code)
            return PlainTextResponse("the PACS refused the edge service's credentials", status_code=502)
        forwarded = {name: upstream.headers[name] for name in FORWARDED_RESPONSE if name in upstream.headers}
        media_type = upstream.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in JSON_TYPES:
            return StreamingResponse(_raw(upstream), status_code=upstream.status_code, headers=forwarded)
        try:
            body = await upstream.aread()  # decoded, whatever the PACS sent
        finally:
            await upstream.aclose()
        for name in ("content-length", "content-encoding"):
            forwarded.pop(name, None)
        body = body.replace(f"{self.dicomweb_url}/".encode(), f"{public_dicomweb_url}/".encode())
        return Response(body, status_code=upstream.status_code, headers=forwarded)


async def _raw(upstream: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    finally:
        await upstream.aclose()
