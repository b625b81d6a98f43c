"""Revision scripts, oldest first by number; alembic skips this file."""
