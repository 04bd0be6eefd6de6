"""Replica sets of a shard: log shipping with majority acknowledgement, epochs kept in etcd and
changed only by compare-and-swap, and failover with a seal (docs/replication.md)."""
