"""Live online state from hbbs, asked over its own protocol (docs/protocol.md §6.12).

An ``OnlineRequest`` on hbbs's TCP port P-1 answers a bitmap for many ids at once, so a
page of the device list costs one short connection. Nothing is cached: when hbbs
restarts, the next page asks the new process. When hbbs cannot be reached the answer
is "unknown" (None), never an error for the API's caller; after a timed-out ask the
answer is "unknown" at once for a while (api/backoff.py), so a wedged hbbs does not slow
every page down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from google.protobuf.message import DecodeError

from pyhbb.api.backoff import TimeoutBackoff
from pyhbb.observability.throttle import worth_logging
from pyhbb.wire import rendezvous_pb2 as pb
from pyhbb.wire.framing import FrameDecoder, FrameError, encode_frame

log = logging.getLogger("pyhbb.api")

MAX_IDS_PER_QUERY = 10_000  # hbbs reports ids beyond its max_online_query as offline
TIMEOUT = 2.0


def decode_states(states: bytes, count: int) -> list[bool]:
    """Bit ``7 - i % 8`` of byte ``i // 8`` is the i-th id (MSB first)."""
    return [i // 8 < len(states) and bool(states[i // 8] & (0x80 >> (i % 8))) for i in range(count)]


class HbbsPresence:
    """Asks one hbbs (host, port P-1) which ids are online."""

    def __init__(self, host: str, port: int, timeout: float = TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.backoff = TimeoutBackoff()
        self._failures = 0

    async def online(self, ids: Sequence[str]) -> dict[str, bool] | None:
        """{id: online} for ``ids``, or None when hbbs did not answer (or did not answer
        in time a moment ago)."""
        if self.backoff.wait_left(asyncio.get_running_loop().time()) > 0:
            return None
        result: dict[str, bool] = {}
        for start in range(0, len(ids), MAX_IDS_PER_QUERY):
            chunk = list(ids[start : start + MAX_IDS_PER_QUERY])
            states = await self._query(chunk)
            if states is None:
                return None
            result.update(zip(chunk, decode_states(states, len(chunk)), strict=True))
        return result

    async def _query(self, ids: list[str]) -> bytes | None:
        request = pb.RendezvousMessage(online_request=pb.OnlineRequest(peers=ids))
        writer = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(encode_frame(request.SerializeToString()))
                decoder = FrameDecoder(1 << 20)
                while True:
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionError("hbbs closed the connection without answering")
                    for payload in decoder.feed(data):
                        msg = pb.RendezvousMessage()
                        msg.ParseFromString(payload)
                        if msg.WhichOneof("union") == "online_response":
                            self._failures = 0
                            self.backoff.answered()
                            return bytes(msg.online_response.states)
        except (OSError, TimeoutError, FrameError, DecodeError, ValueError) as e:
            if isinstance(e, TimeoutError):
                self.backoff.timed_out(asyncio.get_running_loop().time())
                why = f"no answer within {self.timeout:g} s"
            else:
                why = str(e) or type(e).__name__
            self._failures += 1
            if worth_logging(self._failures):
                log.warning(
                    "online state unknown: hbbs at %s:%d did not answer (%s; %d times)",
                    self.host,
                    self.port,
                    why,
                    self._failures,
                )
            return None
        finally:
            if writer is not None:
                writer.close()
