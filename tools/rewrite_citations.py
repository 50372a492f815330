"""Point citations of the old design notes into docs/: safe to run again and again.

Usage: python tools/rewrite_citations.py [--check] [PATH ...]   (default: src tests bench)

Comments and docstrings once cited notes kept outside the repository. This rewrites them:

    PROTOCOL.md §6.4                 ->  docs/protocol.md §6.4
    shared/PROTOCOL.md sections 3.5 and 5.4  ->  docs/protocol.md §3.5 and §5.4
    DESIGN.md                        ->  docs/architecture.md
    API.md §1 / CLUSTER.md §1        ->  docs/api.md §1 / docs/cluster.md §1

Text already pointing into docs/ is left alone, so a second run changes nothing. In Python
files only comments and string literals (docstrings, texts written to reports) are touched,
never code; a Python line that would grow past the 100-column limit gets the short form of
a protocol citation instead (a bare ``§6.4`` means docs/protocol.md, see docs/README.md).
``--check`` changes nothing and exits with status 1 when something would change.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tokenize
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATHS = ("src", "tests", "bench")
LINE_LIMIT = 100  # ruff's line-length for Python files
SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis"}

TARGETS = {
    "PROTOCOL": "docs/protocol.md",
    "DESIGN": "docs/architecture.md",
    "API": "docs/api.md",
    "CLUSTER": "docs/cluster.md",
}
_NUM = r"\d+(?:\.\d+)*"
CITATION = re.compile(
    r"(?<![\w./-])(?:\.\./)*(?:/work/shared/|shared/|docs/)?"
    r"(?P<name>PROTOCOL|DESIGN|API|CLUSTER)\.md"
    # "section 3" / "sections 3.5 and 5.4" after the name become "§3" / "§3.5 and §5.4"
    rf"(?P<sections>\s+sections?\s+{_NUM}(?:(?:,\s*|\s+and\s+|\s+or\s+){_NUM})*)?"
    r"(?P<space>\s*)(?P<section_sign>§?)"
)


def _sections(text: str) -> str:
    """ "sections 3.5 and 5.4" -> "§3.5 and §5.4"."""
    numbers = text.strip().split(None, 1)[1]
    return re.sub(_NUM, lambda m: "§" + m.group(0), numbers)


def replacement(match: re.Match[str], short: bool) -> str:
    """The new text for one citation; ``short`` drops the file name of a protocol
    citation that names a section (a bare § means docs/protocol.md)."""
    name = match.group("name")
    sections = match.group("sections")
    tail = match.group("space") + match.group("section_sign")
    if sections:
        cited = _sections(sections)
        if short and name == "PROTOCOL":
            return cited + tail
        return f"{TARGETS[name]} {cited}{tail}"
    if short and name == "PROTOCOL" and match.group("section_sign"):
        return "§"
    return TARGETS[name] + tail


# An f-string is one STRING token up to Python 3.11, pieces with FSTRING_MIDDLE from 3.12.
_TEXT_TOKENS = {tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)}


def _editable_spans(text: str) -> list[tuple[int, int]]:
    """Offsets of the comments and string literals of Python source ``text``."""
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spans = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in _TEXT_TOKENS:
            (srow, scol), (erow, ecol) = tok.start, tok.end
            spans.append((starts[srow - 1] + scol, starts[erow - 1] + ecol))
    return spans


def rewrite(text: str, python: bool = False) -> str:
    """``text`` with every citation of the old notes pointing into docs/."""
    spans = _editable_spans(text) if python else None
    out: list[str] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        out.append(_rewrite_line(line, pos, spans, python))
        pos += len(line)
    return "".join(out)


def _rewrite_line(line: str, offset: int, spans: list[tuple[int, int]] | None, python: bool) -> str:
    matches = [
        m
        for m in CITATION.finditer(line)
        if spans is None or any(s <= offset + m.start() and offset + m.end() <= e for s, e in spans)
    ]
    if not matches:
        return line
    new = _apply(line, matches, short=False)
    if python and len(new.rstrip("\r\n")) > LINE_LIMIT:
        new = _apply(line, matches, short=True)
    return new


def _apply(line: str, matches: list[re.Match[str]], short: bool) -> str:
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(line[pos : m.start()])
        parts.append(replacement(m, short))
        pos = m.end()
    parts.append(line[pos:])
    return "".join(parts)


def files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
        elif path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not SKIP_DIRS.intersection(child.parts):
                    yield child


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if needed")
    args = parser.parse_args(argv)
    paths = args.paths or [ROOT / p for p in DEFAULT_PATHS]
    changed = 0
    for path in files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files, databases, unreadable files: nothing to cite there
        python = path.suffix == ".py"
        try:
            new = rewrite(text, python)
        except (tokenize.TokenError, SyntaxError) as e:
            print(f"{path}: not valid Python ({e}); skipped", file=sys.stderr)
            continue
        if new == text:
            continue
        changed += 1
        pairs = zip(text.splitlines(), new.splitlines(), strict=True)
        too_long = [
            n
            for n, (before, after) in enumerate(pairs, 1)
            if python and after != before and len(after) > LINE_LIMIT
        ]
        for n in too_long:
            print(f"{path}:{n}: longer than {LINE_LIMIT} columns now; rewrap it", file=sys.stderr)
        if args.check:
            print(f"would rewrite {path}")
        else:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path}")
    if args.check and changed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
