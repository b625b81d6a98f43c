"""Use cases: orchestrate the domain through its ports; no I/O of their own."""
