"""Earmark device firmware: hears the wake word locally and cuts out the request."""

__version__ = "0.1.0"
