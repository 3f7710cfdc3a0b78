"""gate.store package."""
