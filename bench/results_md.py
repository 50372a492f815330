"""bench/RESULTS.md, written by the benchmarks: each one owns a ``## `` section.

A section runs from its ``## `` heading line to the next ``## `` heading (or the end). A new
run replaces its section where it stands, or appends it when the file has none; every
other byte of the file stays as it was. The figures are the benchmark's, but a
``### Notes`` block at the end of the old section was written by hand (what the figures
mean, how loaded the machine was) and is carried over to the end of the new one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

NOTES = "### Notes"
NEW_FILE = "# Benchmark results\n"


def is_notes(line: str) -> bool:
    """``### Notes``, or ``### Notes`` and more words (``### Notes (by hand)``)."""
    line = line.rstrip()
    return line == NOTES or line.startswith(NOTES + " ")


def replace_section(text: str, section: str) -> str:
    """``text`` with ``section`` (its ``## `` heading line first) in place of the old one."""
    heading = section.partition("\n")[0].rstrip()
    if not heading.startswith("## "):
        raise ValueError(f"a section starts with its '## ' heading, not {heading!r}")
    new = section.rstrip() + "\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        sep = "" if not text or text.endswith("\n\n") else "\n" if text.endswith("\n") else "\n\n"
        return text + sep + new
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    notes = next((i for i in range(start + 1, end) if is_notes(lines[i])), None)
    if notes is not None:
        new += "\n" + "".join(lines[notes:end]).rstrip() + "\n"
    tail = lines[end:]
    return "".join(lines[:start]) + new + ("\n" if tail else "") + "".join(tail)


def write_section(path: Path, section: str) -> None:
    """Replace (or append) ``section`` in the file at ``path``, created when missing. The
    file is replaced whole, so an interrupted run cannot truncate the notes in it."""
    text = path.read_text(encoding="utf-8") if path.exists() else NEW_FILE
    partial = path.with_name(path.name + ".partial")
    partial.write_text(replace_section(text, section), encoding="utf-8")
    os.replace(partial, path)


def tree_commit(root: Path) -> str:
    """The short commit of the checkout at ``root`` the figures were measured on, marked
    when ``src/`` had uncommitted changes (or "unknown commit" outside a git checkout)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown commit"
    return (head or "unknown commit") + (" + uncommitted changes in src/" if dirty else "")
