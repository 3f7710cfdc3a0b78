"""Shared pytest configuration: fixture plug-ins for the real tools (trivy, registry, PostgreSQL)."""

pytest_plugins = [
    "tests.support.fx_trivy",
    "tests.support.fx_registry",
    "tests.support.fx_postgres",
    "tests.support.fx_dockerd",
]
