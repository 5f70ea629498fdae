"""The ``syndic`` command: one entry point, one module per verb."""

import os

# A member forks to serialise its snapshots (syndic.server.forked_serialization)
# while grpcio may be in use in the same process (the agent's and the
# console's clients). grpcio's fork handlers then restart its threads in the
# child, which crashed it now and then (SIGSEGV); the child never calls gRPC,
# so the handlers are turned off. grpcio reads this once, so it is set here,
# before anything under syndic.cli imports grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
