"""gate.scanning package."""
