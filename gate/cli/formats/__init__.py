"""gate.cli.formats package."""
