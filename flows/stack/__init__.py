"""The team's monitoring stack: Prometheus metrics, exports of each run's records, the SQL
history table (docs/monitoring-stack.md)."""
