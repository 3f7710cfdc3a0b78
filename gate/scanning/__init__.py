"""Scan jobs: a persisted queue with single-flight per digest+scanner, bounded concurrency and resume."""
