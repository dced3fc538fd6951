"""The service's web app served by uvicorn in a thread of the service's process, on the configured
address, with TLS where the site has no proxy in front to terminate it."""

from __future__ import annotations

import threading
import time

import uvicorn

from serving.edge.service.config import WebSettings


class WebServer:
    def __init__(self, app, settings: WebSettings):
        host, _, port = settings.address.rpartition(":")
        self.config = uvicorn.Config(app, host=host or "127.0.0.1", port=int(port), log_level="warning", access_log=False,
                                     ssl_certfile=str(settings.tls_certificate) if settings.tls_certificate else None,
                                     ssl_keyfile=str(settings.tls_key) if settings.tls_key else None)
        self.server = uvicorn.Server(self.config)
        self.scheme = "https" if settings.tls_certificate else "http"
        self.thread = threading.Thread(target=self.server.run, name="ctscreen-web", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"{self.scheme}://{host}:{port}"

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
