"""Alert rules on a member's metrics, anomaly detectors, notifications, and the
same rules as a Prometheus alerting-rules file."""
