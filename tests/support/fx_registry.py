"""Fixtures plug-in (placeholder until filled in)."""
