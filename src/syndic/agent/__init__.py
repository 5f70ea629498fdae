"""The syndic agent: health checks for locally registered services and the HTTP API."""
