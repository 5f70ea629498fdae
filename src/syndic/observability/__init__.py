"""A member's observability: request records and the slow log, samples of its
own metrics, structured logs, tracing, alert rules with anomaly detectors, and
remote debugging endpoints on the admin API."""
