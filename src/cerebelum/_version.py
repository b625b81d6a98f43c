"""The engine version, stamped on every event it writes."""

__version__ = "0.1.0"
