"""Summaries of py-spy profiles of hbbs (``py-spy record --native --format raw``).

A raw profile has one line per distinct stack: frames from the outermost to the innermost,
separated by ``;``, then the sample count. Frames look like ``name (file:line)`` for Python
and native code with symbols, or ``0x... (lib.so)`` without.

The summary splits the event-loop thread's samples into idle (waiting in epoll) and busy,
then ranks, over the busy samples:

* Python functions by *self* time, where a Python function's self time includes the
  native code it calls (protobuf parsing, socket calls) up to the next Python frame;
* Python functions by inclusive time;
* native leaf functions (where the CPU actually was).

Usage: ``python bench/hbbs_profile.py PROFILE.txt``.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<name>.*) \((?P<where>[^()]*)\)$")
WAITS = (
    "epoll_wait",
    "epoll_pwait",
    "pthread_cond_timedwait",
    "pthread_cond_wait",
    "PyThread_acquire_lock",
    "take_gil",
)
SYSCALLS = ("sendmsg", "recvmsg", "sendto", "recvfrom", "sendmmsg", "recvmmsg", "getpid")


def parse_frame(frame: str) -> tuple[str, str, bool]:
    """(function, file, is_python) of one frame, line numbers dropped."""
    m = FRAME.match(frame.strip())
    if m is None:
        return frame.strip(), "", False
    where = m.group("where")
    file = where.rsplit(":", 1)[0] if ":" in where else where
    is_python = file.endswith(".py") or ("/" not in file and "." not in file)
    return m.group("name"), file, is_python


def label(name: str, file: str) -> str:
    return f"{name} ({file})" if file else name


def summarize_pyspy(path: Path, top: int = 15) -> str:
    main_busy: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    native_leaf: Counter[str] = Counter()
    syscalls: Counter[str] = Counter()
    idle = busy = other_threads = other_busy = 0
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [parse_frame(f) for f in stack.split(";") if f]
        names = [f[0] for f in frames]
        leaf = names[-1] if names else ""
        waiting = any(n.startswith(WAITS) for n in names[-4:])
        if "Thread._bootstrap" in names or "thread_run" in names:
            other_threads += count
            if not waiting:
                other_busy += count
            continue
        if waiting:
            idle += count
            continue
        busy += count
        if leaf.startswith(SYSCALLS):
            syscalls[leaf] += count
        # frames up to the event loop's run() are the same in every sample: skip them
        runner = max((i for i, n in enumerate(names) if n == "Runner.run"), default=-1)
        py = [(n, f) for n, f, is_py in frames[runner + 1 :] if is_py]
        if py:
            main_busy[label(*py[-1])] += count
        else:
            main_busy["(event loop itself: uvloop/libuv, no Python frame)"] += count
        for key in {label(n, f) for n, f in py}:
            incl[key] += count
        native_leaf[label(frames[-1][0], frames[-1][1])] += count
    total = idle + busy
    out = [
        f"py-spy profile {path}: event-loop thread {total} samples, "
        f"{busy / total:.0%} busy, {idle / total:.0%} idle; other threads "
        f"{other_busy} busy samples (database)"
        if total
        else f"py-spy profile {path}: no samples"
    ]
    if not busy:
        return "\n".join(out)

    def table(title: str, counter: Counter[str]) -> None:
        out.append(f"  {title} (% of the event loop's busy samples):")
        for key, n in counter.most_common(top):
            out.append(f"    {n / busy:6.1%}  {key}")

    sys_share = ", ".join(f"{k} {n / busy:.0%}" for k, n in syscalls.most_common(4))
    out.append(
        f"  in system calls (kernel time included, as py-spy sees it): "
        f"{sum(syscalls.values()) / busy:.0%} ({sys_share})"
    )
    table("self time by Python function (native callees included)", main_busy)
    table("inclusive time by Python function", incl)
    table("native leaf functions", native_leaf)
    return "\n".join(out)


if __name__ == "__main__":
    print(summarize_pyspy(Path(sys.argv[1])))
