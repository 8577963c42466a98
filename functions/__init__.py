"""Blueprints: one per concern. A handler parses its input, calls one service, maps the result."""
