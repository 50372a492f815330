"""The repository documents itself: every section cited in src/, tests/ and bench/ exists.

Convention (docs/README.md): a bare section sign with a number (as in ``§6.4``) names a
heading of docs/protocol.md; ``docs/X.md`` followed by one names a heading of docs/X.md,
and so do the bare numbers listed right after it. The design notes that once lived outside
the repository must not be cited any more, only their successors in docs/.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCANNED = ("src", "tests", "bench")
SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis"}
SECTION = "\N{SECTION SIGN}"  # spelled out so that this file's own examples are not scanned

NUMBER = r"\d+(?:\.\d+)*"
CITATION = re.compile(
    rf"(?:docs/(?P<doc>[a-z0-9_-]+)\.md\s+)?{SECTION}\s?(?P<first>{NUMBER})"
    rf"(?:\s*[-–]\s*(?P<last>{NUMBER}))?"  # a range such as 6.6-6.10: both ends must exist
)
# What may separate the items of one list of citations ("docs/api.md §0.1, §0.2 and §1").
LIST_GLUE = re.compile(r"(?:[\s,;/&]|and|or)*")
HEADING = re.compile(rf"^#{{1,6}}\s+{SECTION}(?P<number>{NUMBER})(?=\s|$)", re.MULTILINE)
DOC_MENTION = re.compile(r"docs/(?P<doc>[a-z0-9_-]+)\.md")
# The four old notes, by their upper-case names; their successors are docs/*.md in lower case.
OLD_NOTE = re.compile(r"(?<![\w-])(?:PROTOCOL|DESIGN|API|CLUSTER)\.md")

# docs/protocol.md keeps the numbering of the protocol reference that the code was written
# against: sections 0-15 and, per section, this many subsections.
PROTOCOL_SUBSECTIONS = {1: 5, 2: 6, 3: 5, 4: 4, 5: 4, 6: 18, 7: 10, 8: 5, 9: 2, 10: 4, 11: 5, 14: 5}
PROTOCOL_SECTIONS = {str(n) for n in range(16)} | {
    f"{n}.{m}" for n, count in PROTOCOL_SUBSECTIONS.items() for m in range(1, count + 1)
}


def headings(doc: Path) -> list[str]:
    return [m.group("number") for m in HEADING.finditer(doc.read_text(encoding="utf-8"))]


def all_headings() -> dict[str, set[str]]:
    """Section numbers of every docs/*.md, by file stem."""
    return {doc.stem: set(headings(doc)) for doc in DOCS.glob("*.md")}


def citation_problems(text: str, known: dict[str, set[str]]) -> list[str]:
    """Citations in ``text`` that name a missing document or section."""
    problems = []
    for line in text.splitlines():
        doc, end = "", 0
        for m in CITATION.finditer(line):
            if m.group("doc"):
                doc = m.group("doc")
            elif not (doc and LIST_GLUE.fullmatch(line[end : m.start()])):
                doc = "protocol"  # a bare section sign: docs/protocol.md
            end = m.end()
            if doc not in known:
                problems.append(f"docs/{doc}.md does not exist")
                continue
            for number in filter(None, (m.group("first"), m.group("last"))):
                if number not in known[doc]:
                    problems.append(f"docs/{doc}.md has no section {SECTION}{number}")
    for m in DOC_MENTION.finditer(text):
        if m.group("doc") not in known:
            problems.append(f"docs/{m.group('doc')}.md does not exist")
    return list(dict.fromkeys(problems))  # each problem once


def old_note_mentions(text: str) -> list[str]:
    """Mentions of the old notes (wherever they are said to live, docs/ included)."""
    return OLD_NOTE.findall(text)


def scanned_files() -> Iterator[tuple[Path, str]]:
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or SKIP_DIRS.intersection(path.parts):
                continue
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # binary files cite nothing


# -- the repository --------------------------------------------------------------------------


def test_protocol_keeps_the_cited_section_numbers() -> None:
    found = headings(DOCS / "protocol.md")
    assert len(found) == len(set(found)), "a section number is used twice"
    assert set(found) == PROTOCOL_SECTIONS


def test_every_cited_section_exists() -> None:
    known = all_headings()
    problems = [
        f"{path.relative_to(ROOT)}: {problem}"
        for path, text in scanned_files()
        for problem in citation_problems(text, known)
    ]
    assert problems == []


def test_nothing_cites_the_old_notes_outside_docs() -> None:
    # Fixed by tools/rewrite_citations.py (run it after merging code that cites them).
    found = [
        f"{path.relative_to(ROOT)}: {mention}"
        for path, text in scanned_files()
        for mention in old_note_mentions(text)
    ]
    assert found == []


def test_links_between_docs_resolve() -> None:
    broken = []
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


# -- the checks themselves -------------------------------------------------------------------

KNOWN = {"protocol": {"6", "6.4", "6.6", "6.10", "7.3"}, "api": {"0", "1"}}
NOWHERE = "docs/" + "nowhere.md"  # split so that the scan of this file does not see it


def _old(name: str) -> str:
    """An old note's file name, assembled so that this file never spells one out."""
    return name + ".md"


def cite(text: str) -> str:
    return text.replace("$", SECTION)


@pytest.mark.parametrize(
    "text",
    [
        "see $6.4",
        "(docs/protocol.md $6.4, $7.3)",
        "answers (docs/protocol.md $6.6-6.10)",
        "docs/api.md $0 and $1",
        "$6.4 step 6",
        "a range of $6.6–6.10 with an en dash",
    ],
)
def test_existing_sections_pass(text: str) -> None:
    assert citation_problems(cite(text), KNOWN) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("see $99.1", "docs/protocol.md has no section $99.1"),
        ("(docs/protocol.md $6.4, $6.5)", "docs/protocol.md has no section $6.5"),
        ("$6.6-6.11", "docs/protocol.md has no section $6.11"),
        ("docs/api.md $0, $6.4", "docs/api.md has no section $6.4"),
        ("docs/api.md $2", "docs/api.md has no section $2"),
        (NOWHERE + " $1", NOWHERE + " does not exist"),
        ("see " + NOWHERE, NOWHERE + " does not exist"),
    ],
)
def test_made_up_sections_fail(text: str, problem: str) -> None:
    assert citation_problems(cite(text), KNOWN) == [cite(problem)]


def test_a_bare_citation_after_other_words_means_the_protocol() -> None:
    # "$1" is not in the list after docs/api.md, so it names docs/protocol.md, which lacks it.
    problems = citation_problems(cite("docs/api.md $0 says so; compare $1"), KNOWN)
    assert problems == [cite("docs/protocol.md has no section $1")]


def test_old_note_names_are_found() -> None:
    old = _old("PROTOCOL")  # built at run time so that this file does not cite it
    assert old_note_mentions(f"see {old} {SECTION}6.4") == [old]
    assert old_note_mentions("see shared/" + _old("DESIGN")) == [_old("DESIGN")]
    assert old_note_mentions("see docs/" + _old("API")) == [_old("API")]
    assert old_note_mentions("see docs/protocol.md and docs/api.md, docs/cluster.md") == []


# -- tools/rewrite_citations.py --------------------------------------------------------------


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "rewrite_citations", ROOT / "tools" / "rewrite_citations.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (f"({_old('PROTOCOL')} $6.4, $7.3)", "(docs/protocol.md $6.4, $7.3)"),
        (
            f"// shared/{_old('PROTOCOL')} sections 3.5 and 5.4.",
            "// docs/protocol.md $3.5 and $5.4.",
        ),
        (f"// shared/{_old('PROTOCOL')} section 3 (x)", "// docs/protocol.md $3 (x)"),
        (f"no I/O ({_old('DESIGN')}).", "no I/O (docs/architecture.md)."),
        (f"{_old('API')} $1 and {_old('CLUSTER')} $5", "docs/api.md $1 and docs/cluster.md $5"),
        (f"{_old('PROTOCOL')}'s recommendation", "docs/protocol.md's recommendation"),
        (
            "docs/protocol.md $6.4 and docs/architecture.md",
            "docs/protocol.md $6.4 and docs/architecture.md",
        ),
    ],
)
def test_tool_rewrites_and_is_idempotent(tool: ModuleType, before: str, after: str) -> None:
    once = tool.rewrite(cite(before))
    assert once == cite(after)
    assert tool.rewrite(once) == once


def test_tool_touches_only_comments_and_strings_in_python(tool: ModuleType) -> None:
    doc = _old("PROTOCOL")
    # The second line reads an attribute ``md`` of a name: code, to be left alone.
    source = cite(f'"""Framing ({doc} $2.1)."""\nx = {doc}  # {doc} $2.1\n')
    expected = cite(f'"""Framing (docs/protocol.md $2.1)."""\nx = {doc}  # docs/protocol.md $2.1\n')
    assert tool.rewrite(source, python=True) == expected
    # Without the Python rule the code would have been changed too.
    assert "x = docs/protocol.md  #" in tool.rewrite(source)


def test_tool_shortens_python_lines_that_would_grow_too_long(tool: ModuleType) -> None:
    doc = _old("PROTOCOL")
    padding = "x" * 70
    source = cite(f'"""{padding} ({doc} $7.3)."""\n')
    assert len(source) - 1 <= 100
    assert tool.rewrite(source, python=True) == cite(f'"""{padding} ($7.3)."""\n')
    # The same text outside Python has no line limit.
    assert tool.rewrite(source) == cite(f'"""{padding} (docs/protocol.md $7.3)."""\n')
