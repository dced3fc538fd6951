"""The agent's Prometheus metrics (one registry per agent) and its small HTTP face on loopback:
``/metrics``, ``/healthz`` (the loop is alive), ``/readyz`` (a verified release is in service),
``/status`` (the state as JSON) and ``POST /rollback``."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest


class AgentMetrics:
    def __init__(self, seconds_since_poll: Callable[[], float]):
        self.registry = registry = CollectorRegistry()
        self.serving_version = Gauge("ctscreen_edge_serving_version", "Release version in service (0: none)", registry=registry)
        self.serving_info = Gauge("ctscreen_edge_serving_info", "The model in service, by name and version", ["model", "version"],
                                  registry=registry)
        self.channel_version = Gauge("ctscreen_edge_channel_version", "Release version the channel names", registry=registry)
        self.last_success = Gauge("ctscreen_edge_last_update_success_timestamp_seconds", "When the last update went into service",
                                  registry=registry)
        self.last_failure = Gauge("ctscreen_edge_last_update_failure_timestamp_seconds", "When the last update failed", registry=registry)
        self.last_failure_reason = Gauge("ctscreen_edge_last_update_failure_info", "The last failed update's version, kind and reason",
                                         ["version", "kind", "reason"], registry=registry)
        self.failures = Counter("ctscreen_edge_update_failures", "Updates refused or failed, by kind", ["kind"], registry=registry)
        self.verification_failures = Counter("ctscreen_edge_verification_failures", "Releases refused by TUF or model-signature checks",
                                             registry=registry)
        self.smoke_tests = Counter("ctscreen_edge_smoke_tests", "Smoke tests of loaded candidates", ["result"], registry=registry)
        self.downloaded = Counter("ctscreen_edge_downloaded_bytes", "Bytes of release files downloaded", registry=registry)
        self.polls = Counter("ctscreen_edge_polls", "Polls of the channel, by outcome", ["outcome"], registry=registry)
        Gauge("ctscreen_edge_seconds_since_last_poll", "Seconds since central last answered a poll",
              registry=registry).set_function(seconds_since_poll)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class AgentHTTP:
    """Loopback HTTP for Prometheus, probes and the on-site rollback."""

    def __init__(self, address: str, metrics: AgentMetrics, healthy: Callable[[], bool], ready: Callable[[], bool],
                 status: Callable[[], dict], rollback: Callable[[], dict]):
        host, _, port = address.rpartition(":")
        routes = {"/metrics": lambda: (200, CONTENT_TYPE_LATEST, metrics.exposition()),
                  "/healthz": lambda: _probe(healthy()), "/readyz": lambda: _probe(ready()),
                  "/status": lambda: (200, "application/json", json.dumps(status()).encode())}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._answer(*routes[self.path]()) if self.path in routes else self._answer(404, "text/plain", b"not found\n")

            def do_POST(self):
                if self.path != "/rollback":
                    return self._answer(404, "text/plain", b"not found\n")
                try:
                    self._answer(200, "application/json", json.dumps(rollback()).encode())
                except Exception as error:  # the agent's refusal, reported to the operator who asked
                    self._answer(409, "application/json", json.dumps({"error": str(error)}).encode())

            def _answer(self, code: int, kind: str, body: bytes):
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="edge-agent-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "AgentHTTP":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _probe(ok: bool) -> tuple[int, str, bytes]:
    return (200, "text/plain", b"ok\n") if ok else (503, "text/plain", b"not ready\n")


def seconds_since(since: float | None) -> float:
    """Seconds since an epoch time (``inf`` when never)."""
    return float("inf") if since is None else max(0.0, time.time() - since)
