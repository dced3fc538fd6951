"""The service's web app served by uvicorn in a thread of the service's process, on the configured
address, with TLS where the site has no proxy in front to terminate it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import uvicorn

from serving.edge.service.config import WebSettings


class WebServer:
    def __init__(self, app, address: str = "127.0.0.1:0", tls_certificate: Path | None = None, tls_key: Path | None = None):
        host, _, port = address.rpartition(":")
        self.app = app
        self.config = uvicorn.Config(app, host=host or "127.0.0.1", port=int(port), log_level="warning", access_log=False,
                                     ssl_certfile=str(tls_certificate) if tls_certificate else None,
                                     ssl_keyfile=str(tls_key) if tls_key else None)
        self.server = uvicorn.Server(self.config)
        self.scheme = "https" if tls_certificate else "http"
        self.thread = threading.Thread(target=self.server.run, name="ctscreen-web", daemon=True)

    @classmethod
    def for_site(cls, app, settings: WebSettings) -> "WebServer":
        return cls(app, settings.address, settings.tls_certificate, settings.tls_key)

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.config.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> "WebServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start on {self.config.host}:{self.config.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
