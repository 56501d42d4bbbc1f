"""Prometheus metrics, one registry per gateway instance (tests build many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.inbound_messages = Counter(
            "sms_gateway_inbound_messages",
            "Inbound SMS handled, by channel and outcome code",
            ["channel", "outcome"],
            registry=r,
        )
        self.replies = Counter(
            "sms_gateway_replies",
            "Replies handed to a transport, by channel and result (sent|failed)",
            ["channel", "result"],
            registry=r,
        )
        self.parse_seconds = Histogram(
            "sms_gateway_parse_seconds",
            "Time to parse one SMS text",
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01),
            registry=r,
        )
        self.handle_seconds = Histogram(
            "sms_gateway_handle_seconds",
            "Time from an inbound SMS being stored to its reply being stored",
            ["channel"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.inbound_batch_messages = Histogram(
            "sms_gateway_inbound_batch_messages",
            "Inbound SMS requests per batch transaction (commit_linger_ms: at a trickle)",
            buckets=(1, 2, 3, 4, 6, 8, 16, 32, 64, 128, 200),
            registry=r,
        )
        # Per SMPP link ([[smpp.links]] name; "default" for a plain [smpp] section).
        self.smpp_binds = Counter(
            "sms_gateway_smpp_binds", "Successful SMPP binds", ["link", "mode"], registry=r
        )
        self.smpp_reconnects = Counter(
            "sms_gateway_smpp_reconnects", "SMPP reconnect attempts", ["link"], registry=r
        )
        self.smpp_throttles = Counter(
            "sms_gateway_smpp_throttles",
            "submit_sm answered ESME_RTHROTTLED or ESME_RMSGQFUL",
            ["link"],
            registry=r,
        )
        self.smpp_bound = Gauge(
            "sms_gateway_smpp_bound",
            "1 while the link is bound (both binds of a receiver+transmitter pair)",
            ["link"],
            registry=r,
        )
        self.smpp_mo = Counter(
            "sms_gateway_smpp_mo_received",
            "deliver_sm/data_sm MO (and parts of long MO) received",
            ["link"],
            registry=r,
        )
        self.smpp_submits = Counter(
            "sms_gateway_smpp_replies",
            "Replies by the link that carried them and result (sent|failed)",
            ["link", "result"],
            registry=r,
        )
        self.smpp_receipts = Counter(
            "sms_gateway_smpp_receipts", "Delivery receipts received", ["link"], registry=r
        )
        self.smpp_window = Gauge(
            "sms_gateway_smpp_window_in_use",
            "submit_sm waiting for their submit_sm_resp",
            ["link"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "sms_gateway_outbox_depth", "Replies waiting in the outbox", registry=r
        )
        self.inbound_queue_depth = Gauge(
            "sms_gateway_inbound_queue_depth",
            "Inbound SMS stored but not yet handled (read from the database)",
            registry=r,
        )
        self.loop_lag = Histogram(
            "sms_gateway_event_loop_lag_seconds",
            "How late the event loop ran a timer that was due (a stall holds up every MO)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.loop_lag_max = Gauge(
            "sms_gateway_event_loop_lag_max_seconds",
            "The longest event loop stall in the last 10 seconds",
            registry=r,
        )
        self.db_commit_seconds = Histogram(
            "sms_gateway_db_commit_seconds",
            "Time the database took to commit a write transaction of the pipeline "
            "(on SQLite the WAL's fsync: a slow disk shows here first)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.instances_taken_over = Counter(
            "sms_gateway_instances_taken_over",
            "Dead instances whose claimed replies and unconfirmed MO this one took over",
            registry=r,
        )
