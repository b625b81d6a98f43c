"""Alembic migrations of the SQL store; applied by `cerebelum.infrastructure.sql.migrate`."""
