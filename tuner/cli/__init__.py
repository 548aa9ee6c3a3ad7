"""The ``tuner`` command line."""

from tuner.cli._app import app, main

__all__ = ["app", "main"]
