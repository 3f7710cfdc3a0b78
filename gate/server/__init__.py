"""gate.server package."""
