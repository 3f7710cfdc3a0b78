"""Output formats for the `gate` command: aligned plain-text tables and JSON documents.

Renderers only turn messages into text; they never decide exit codes or talk to the server.
"""
