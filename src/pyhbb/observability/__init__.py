"""Observability: logging set-up and runtime counters."""
