"""MVCC state machine of the coordination store (sans-IO)."""
