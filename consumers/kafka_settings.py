"""How the Kafka adapter (`consumers.kafka_io`) configures topics, producers and
consumers, and why each value: plain settings, read by `kafka_io` and the benchmarks.

I/O: none.
"""

from __future__ import annotations

from typing import Any

SAFE_TOPIC_CONFIG: dict[str, str] = {
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "cleanup.policy": "delete",
    "min.insync.replicas": "1",
}
"""Retention forever: the topics are the subscribers' history and the replay source."""


PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "batch_size": 256 * 1024,
    "metrics_enabled": False,
    "max_in_flight_requests_per_connection": 5,
    "max_block_ms": 5000,
    "request_timeout_ms": 5000,
    "delivery_timeout_ms": 15000,
    "reconnect_backoff_max_ms": 1000,
    "bootstrap_timeout_ms": 5000,
    "allow_auto_create_topics": False,
}
"""Idempotent, acks=all; a few ms of linger and large batches for throughput; short
timeouts so an outage surfaces as `BrokerUnavailable` within seconds, not minutes."""


CONSUMER_FETCH: dict[str, Any] = {
    "max_partition_fetch_bytes": 512 * 1024,
    "fetch_max_bytes": 2 * 1024 * 1024,
    "metrics_enabled": False,
    "session_timeout_ms": 10000,
    "heartbeat_interval_ms": 3000,
    "reconnect_backoff_max_ms": 1000,
    "bootstrap_timeout_ms": 5000,
}
"""Group timings: a killed member's partitions move after 10 s, not kafka-python's 45 s,
and after an outage the client tries the broker again every second, not every 30 s.

Fetch buffers bound a consumer's memory (kafka-python keeps whole fetch responses
until their records are taken, and a poll's records are what the runner holds and
hands to its writer): 512 kB per partition and 2 MB per fetch keep a replay's consumer
and writer together under ~175 MB, where 1 MB / 4 MB took 225 MB, for about the same
rate (a fetch still brings ~2,000 records of ~900 bytes). kafka-python's own metrics
(sensors updated per record) cost 15-20 % of a read's CPU and nothing reads them."""


END_OFFSETS_TIMEOUT_MS = 5000
CLOSE_TIMEOUT_MS = 5000
