"""What happened in production: traffic counters, later the prediction log, metrics and drift."""
