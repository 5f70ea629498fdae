"""Test-wide settings: hypothesis profiles, and gRPC's fork handlers off.

``ci`` (the default) is bounded and derandomized, so a CI run is repeatable;
``deep`` (``HYPOTHESIS_PROFILE=deep``, used by ``make test-deep``) explores
far more examples with fresh randomness on each run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# grpcio's fork handlers off, as in a member process: tests run members in
# process, with grpcio in use, and a member forks to serialise its snapshots.
# syndic.cli sets it, and must be imported before anything imports grpc.
import syndic.cli  # noqa: F401

settings.register_profile(
    "ci",
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "deep",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
