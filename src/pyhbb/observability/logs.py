"""Logging set-up from a RUST_LOG-style value (``info``, ``debug``, ``hbbs=debug,warn``).

Targets ``hbbs`` and ``hbbr`` (the official binaries' names) map to our rendezvous and
relay packages, so an admin's existing RUST_LOG keeps working.
"""

from __future__ import annotations

import logging
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}
TARGETS = {
    "hbbs": "pyhbb.rendezvous",
    "hbbr": "pyhbb.relay",
    "pyhbb": "pyhbb",
}
FORMAT = "[%(asctime)s] %(levelname)-5s [%(name)s] %(message)s"


def parse_rust_log(value: str | None, default: int = logging.INFO) -> tuple[int, dict[str, int]]:
    """Return (root level, {logger name: level}); unknown words are ignored."""
    root = default
    per_target: dict[str, int] = {}
    for directive in (value or "").split(","):
        directive = directive.strip()
        if not directive:
            continue
        target, sep, level_name = directive.partition("=")
        if not sep:
            if target.lower() in LEVELS:
                root = LEVELS[target.lower()]
            elif target in TARGETS or target.startswith("pyhbb"):
                per_target[TARGETS.get(target, target)] = TRACE  # bare target = all levels
            continue
        level = LEVELS.get(level_name.strip().lower())
        if level is not None:
            target = target.strip()
            per_target[TARGETS.get(target, target)] = level
    return root, per_target


def setup_logging(rust_log: str | None) -> None:
    root_level, per_target = parse_rust_log(rust_log)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(root_level)
    for name, level in per_target.items():
        logging.getLogger(name).setLevel(level)
