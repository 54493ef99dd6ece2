"""Prometheus metrics, one registry per app so several apps can live in one process (tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("vbranch_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                     registry=r)
        self.ws_connections = Gauge("vbranch_ws_connections", "Open WebSocket connections", ["role"], registry=r)
        self.ws_messages = Counter("vbranch_ws_messages_total", "WebSocket messages received", ["type"], registry=r)
        self.ws_errors = Counter("vbranch_ws_errors_total", "WebSocket error replies", ["code"], registry=r)
        self.sessions_created = Counter("vbranch_sessions_created_total", "Sessions created", ["service", "channel"],
                                        registry=r)
        self.session_transitions = Counter("vbranch_session_transitions_total", "Session state changes", ["state"],
                                           registry=r)
        self.queue_waiting = Gauge("vbranch_queue_waiting", "Sessions waiting", ["service"], registry=r)
        self.join_to_offer = Histogram("vbranch_join_to_offer_seconds", "Customer hello to first offer",
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600), registry=r)
        self.db_commits = Counter("vbranch_db_commits_total", "Database transactions committed", registry=r)
        self.journal_commits = Counter("vbranch_journal_commits_total",
                                       "Group commits of the evidence journal", registry=r)
        self.journal_rows = Counter("vbranch_journal_rows_total", "Timeline and audit rows journaled", registry=r)
        self.keyframe_requests = Counter("vbranch_media_keyframe_requests_total",
                                         "Keyframe requests (PLI) sent to a party", ["reason"], registry=r)
        self.manifests_sealed = Counter("vbranch_manifests_sealed_total",
                                        "Manifests sealed, by where their facts came from (memory, database)",
                                        ["facts"], registry=r)
        self.desk_persist_failures = Counter("vbranch_desk_persist_failures_total",
                                             "Queue decisions whose persisting failed (retried or rejected)",
                                             ["outcome"], registry=r)
