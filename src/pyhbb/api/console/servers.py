"""hbbs's and hbbr's loopback consoles, as the web console uses them.

Each command is one short TCP connection: send the command line, read the answer until
the server closes (docs/protocol.md §9). Both servers accept console sessions only from
loopback addresses, so this works when the API runs on the same machine, as ``pyhbb
run`` starts it. When a server does not answer, the page says so instead of failing;
after a timed-out command, commands fail at once for a while (api/backoff.py), so a
wedged server does not make every page wait.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re

from pyhbb.api.backoff import TimeoutBackoff
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
        self.backoff = TimeoutBackoff()
        self._failures = 0

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def run(self, *words: str) -> str:
        """The answer to one command; raises ConsoleUnavailable (with a reason)."""
        if not words or not all(valid_argument(w) for w in words):
            raise ValueError(f"not a console command: {words!r}")
        wait = self.backoff.wait_left(asyncio.get_running_loop().time())
        if wait > 0:
            raise ConsoleUnavailable(
                f"{self.name} did not answer on {self.address} within {self.timeout:g} s a "
                f"moment ago; asking again in {math.ceil(wait)} s"
            )
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
            if isinstance(e, TimeoutError):
                self.backoff.timed_out(asyncio.get_running_loop().time())
                why = f"no answer within {self.timeout:g} s"
            else:
                why = str(e) or type(e).__name__
            self._failures += 1
            if worth_logging(self._failures):
                log.warning(
                    "%s console at %s did not answer (%s; %d times)",
                    self.name,
                    self.address,
                    why,
                    self._failures,
                )
            raise ConsoleUnavailable(
                f"{self.name} did not answer on {self.address} ({why}); "
                f"its console accepts only connections from the same machine"
            ) from None
        finally:
            if writer is not None:
                writer.close()
        self._failures = 0
        self.backoff.answered()
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
