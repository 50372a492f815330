"""hbbs's and hbbr's loopback consoles, as the web console uses them.

Each command is one short TCP connection: send the command line, read the answer until
the server closes (docs/protocol.md §9). Both servers accept console sessions only from
loopback addresses, so this works when the API runs on the same machine, as ``pyhbb
run`` starts it. When a server does not answer, the page says so instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
import re

from pyhbb.observability.throttle import worth_logging

log = logging.getLogger("pyhbb.api.console")

TIMEOUT = 3.0
MAX_ANSWER = 1 << 20
# What may reach a console line: no spaces (they separate arguments), no control bytes.
_ARGUMENT = re.compile(r"[\x21-\x7e]{1,255}\Z")


class ConsoleUnavailable(Exception):
    pass


def valid_argument(text: str) -> bool:
    return _ARGUMENT.match(text) is not None


class ServerConsole:
    def __init__(self, name: str, host: str, port: int, timeout: float = TIMEOUT) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.timeout = timeout
        self._failures = 0

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def run(self, *words: str) -> str:
        """The answer to one command; raises ConsoleUnavailable (with a reason)."""
        if not words or not all(valid_argument(w) for w in words):
            raise ValueError(f"not a console command: {words!r}")
        writer = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(" ".join(words).encode() + b"\n")
                await writer.drain()
                answer = await reader.read(MAX_ANSWER)
                while answer and len(answer) < MAX_ANSWER:
                    more = await reader.read(MAX_ANSWER - len(answer))
                    if not more:
                        break
                    answer += more
        except (OSError, TimeoutError) as e:
            self._failures += 1
            if worth_logging(self._failures):
                log.warning(
                    "%s console at %s did not answer (%s; %d times)",
                    self.name,
                    self.address,
                    e or type(e).__name__,
                    self._failures,
                )
            raise ConsoleUnavailable(
                f"{self.name} did not answer on {self.address} ({e or type(e).__name__}); "
                f"its console accepts only connections from the same machine"
            ) from None
        finally:
            if writer is not None:
                writer.close()
        self._failures = 0
        return answer.decode("utf-8", "replace")


def parse_pairs(text: str) -> dict[str, str]:
    """``name: value`` lines (hbbs ``stats``) as a dict, in order."""
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            pairs[name.strip()] = value.strip()
    return pairs


def parse_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]
