"""gate.webhook package."""
