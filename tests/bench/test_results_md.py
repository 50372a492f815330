"""bench/results_md.py, the one writer of bench/RESULTS.md sections: a section is replaced
where it stands or appended, its hand-written notes survive, and nothing else changes."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_results_md() -> ModuleType:
    # bench/ is a folder of scripts, not a package: load the module from its file
    spec = importlib.util.spec_from_file_location("results_md", BENCH / "results_md.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results_md = load_results_md()

BEFORE = "# Benchmark results\n\nIntroduction, by hand.\n\n"
LOAD = "## Rendezvous (hbbs)\n\nOld load figures.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
NOTES = "### Notes\n\n- The machine was busy.\n- Read the ratios.  \n\n"
# its heading starts with the one above: only a whole line may match
FLOOD = "## Rendezvous (hbbs) under a spoofed flood\n\nOld flood figures.\n\n"
AFTER = "## Store (SQLite database, group commit)\n\nStore figures.\n\n### Notes\n\nStore notes.\n"


def test_a_section_is_replaced_where_it_stands_and_keeps_its_notes(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_bytes((BEFORE + FLOOD + LOAD + NOTES + AFTER).encode())
    results_md.write_section(path, "## Rendezvous (hbbs)\n\nNew load figures.\n")
    assert path.read_bytes().decode() == (
        BEFORE
        + FLOOD
        + "## Rendezvous (hbbs)\n\nNew load figures.\n\n"
        + NOTES.rstrip()
        + "\n\n"
        + AFTER
    )


def test_the_flood_section_stays_in_the_middle(tmp_path: Path) -> None:
    # hbbs_flood.py used to move its section to the end of the file
    path = tmp_path / "RESULTS.md"
    path.write_text(BEFORE + LOAD + FLOOD + NOTES + AFTER)
    results_md.write_section(path, "## Rendezvous (hbbs) under a spoofed flood\n\nNew.")
    text = path.read_text()
    assert text.startswith(BEFORE + LOAD + "## Rendezvous (hbbs) under a spoofed flood\n\nNew.\n")
    assert text.endswith("\n" + NOTES.rstrip() + "\n\n" + AFTER)
    assert "Old flood figures" not in text and text.count("### Notes") == 2


def test_a_missing_section_is_appended_and_the_rest_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    # one blank line before the new section, unless the file already ends with more
    for old, sep in ((BEFORE + LOAD, ""), (BEFORE + LOAD[:-1], "\n"), (BEFORE + LOAD[:-2], "\n\n")):
        path.write_text(old)
        results_md.write_section(path, "## Relay (hbbr)\n\nRelay figures.\n\n\n")
        assert path.read_text() == old + sep + "## Relay (hbbr)\n\nRelay figures.\n"


def test_a_missing_file_is_created(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    results_md.write_section(path, "## Relay (hbbr)\n\nRelay figures.")
    assert path.read_text() == "# Benchmark results\n\n## Relay (hbbr)\n\nRelay figures.\n"
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]  # no partial file left


def test_the_last_section_is_replaced_without_notes(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(BEFORE + LOAD)
    results_md.write_section(path, "## Rendezvous (hbbs)\n\nNew.\n")
    assert path.read_text() == BEFORE + "## Rendezvous (hbbs)\n\nNew.\n"
    results_md.write_section(path, "## Rendezvous (hbbs)\n\nNew.\n")  # again: the same
    assert path.read_text() == BEFORE + "## Rendezvous (hbbs)\n\nNew.\n"


def test_every_section_of_the_real_results_file_can_be_rewritten_alone(tmp_path: Path) -> None:
    original = (BENCH / "RESULTS.md").read_text()
    headings = re.findall(r"^## .*$", original, re.MULTILINE)
    assert len(headings) >= 5
    path = tmp_path / "RESULTS.md"
    for i, heading in enumerate(headings):
        path.write_text(original)
        results_md.write_section(path, f"{heading}\n\nRewritten.\n")
        text = path.read_text()
        start, end = original.index(heading + "\n"), len(original)
        if i + 1 < len(headings):
            end = original.index("\n" + headings[i + 1] + "\n") + 1
        old_section = original[start:end]
        assert text.startswith(original[:start] + f"{heading}\n\nRewritten.\n"), heading
        assert text.endswith(original[end:]), heading  # the sections after, byte for byte
        notes = re.search(r"^### Notes\n.*", old_section, re.MULTILINE | re.DOTALL)
        if notes:
            assert notes.group(0).rstrip() + "\n" in text, heading


def test_a_section_must_start_with_its_heading() -> None:
    for section in ("Figures without a heading.\n", "# Benchmark results\n", "### Notes\n"):
        with pytest.raises(ValueError):
            results_md.replace_section(BEFORE, section)


def test_tree_commit_names_the_checkout_or_says_it_is_unknown(tmp_path: Path) -> None:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=BENCH, capture_output=True, text=True
    ).stdout.strip()
    assert results_md.tree_commit(BENCH.parent).startswith(head)
    assert results_md.tree_commit(tmp_path) == "unknown commit"
