"""The relay's partitioner puts every key where kafka-python's (and Java's) default does."""

from __future__ import annotations

from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner

from consumers.kafka_io import KeyHashCachingPartitioner


class _Cluster:
    """The two ClusterMetadata lookups a partitioner makes, for one topic."""

    def __init__(self, partitions: int) -> None:
        self._partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions


@given(key=st.binary(min_size=1, max_size=64), partitions=st.integers(1, 64))
def test_same_partition_as_the_default_partitioner(key: bytes, partitions: int) -> None:
    cluster = _Cluster(partitions)
    cached = KeyHashCachingPartitioner(cached_keys=4)
    expected = DefaultPartitioner().partition("t", key, key, b"v", b"v", cluster)
    assert cached.partition("t", key, key, b"v", b"v", cluster) == expected
    assert cached.partition("t", key, key, b"v", b"v", cluster) == expected  # from the cache


def test_aggregate_ids_spread_like_the_java_client() -> None:
    # Placements computed with the Java client 4.1.2 (Utils.toPositive(Utils.murmur2(key))
    # % 3), so a change of hash is caught even if both Python partitioners changed.
    cluster = _Cluster(3)
    placements = {b"a": 1, b"customer-1": 0, b"7f2c1b9e-0d3a-4e57-9a51-3f2b8c6d4e10": 0}
    for key, partition in placements.items():
        assert (
            KeyHashCachingPartitioner().partition("t", key, key, None, None, cluster) == partition
        )
    keys = [str(uuid4()).encode() for _ in range(3000)]
    counts = [0, 0, 0]
    for key in keys:
        counts[KeyHashCachingPartitioner().partition("t", key, key, None, None, cluster)] += 1
    assert min(counts) > 800


def test_keyless_records_fall_back_to_the_default() -> None:
    assert KeyHashCachingPartitioner().partition("t", None, None, b"v", b"v", _Cluster(1)) == 0
