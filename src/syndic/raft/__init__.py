"""Raft consensus core (sans-IO)."""
