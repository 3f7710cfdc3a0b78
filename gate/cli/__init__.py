"""gate.cli package."""
