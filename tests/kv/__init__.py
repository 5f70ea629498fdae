"""Tests of syndic.kv."""
