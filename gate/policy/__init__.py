"""gate.policy package."""
