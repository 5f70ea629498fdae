"""The ``syndic`` command: one entry point, one module per verb."""
