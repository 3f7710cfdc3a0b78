"""gate: a promotion gate for container images (d → t → s1 → s2 → p)."""

__version__ = "0.1.0"
