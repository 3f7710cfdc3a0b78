"""Scanner adapters: each turns one real scanner's output into frozen ScanResult values.

This package never imports `gate`; the gate service depends on it, not the other way round.
"""
