"""gate.images package."""
