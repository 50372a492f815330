"""Refusals a client can repeat at will are logged at the 1st, 2nd, 4th ... occurrence of
each kind (issue 12 item 5), naming what to change."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import pytest

from pyhbb.relay.core import RelayCore
from tests.relay.core_helpers import arrive_tcp, frame, make_core, tcp

N = 1000
MOST = math.floor(math.log2(N)) + 1  # 1, 2, 4, ... 512


def refuse_handshakes(core: RelayCore) -> None:
    core.connected(tcp("1.1.1.1", 0), 0.0)  # the one allowed
    for i in range(N):
        core.connected(tcp("1.1.1.1", i + 1), 0.0)


def refuse_blocked(core: RelayCore) -> None:
    core.blocklist.add(["6.6.6.6"])
    for i in range(N):
        core.connected(tcp("6.6.6.6", i), 0.0)


def refuse_licence(core: RelayCore) -> None:
    for i in range(N):
        a = tcp("2.2.2.2", i)
        core.connected(a, 0.0)
        core.tcp_data(a, frame(f"u{i}", "wrong"), 0.0)


def refuse_waiting_per_ip(core: RelayCore) -> None:
    arrive_tcp(core, tcp("3.3.3.3", 0), "first")
    for i in range(N):
        arrive_tcp(core, tcp("3.3.3.3", i + 1), f"u{i}")


def refuse_waiting_full(core: RelayCore) -> None:
    arrive_tcp(core, tcp("4.4.4.4", 0), "first")
    for i in range(N):
        arrive_tcp(core, tcp(f"10.0.{i // 250}.{i % 250}", 1), f"u{i}")


@pytest.mark.parametrize(
    ("flood", "limits", "hint"),
    [
        (refuse_handshakes, {"max_handshakes_per_ip": 1}, "MAX_HANDSHAKES_PER_IP"),
        (refuse_blocked, {}, "blocklist"),
        (refuse_licence, {}, "-k / KEY"),
        (refuse_waiting_per_ip, {"max_waiting_per_ip": 1}, "MAX_WAITING_PER_IP"),
        (refuse_waiting_full, {"max_waiting": 1}, "MAX_WAITING"),
    ],
)
def test_n_refusals_give_log2_n_lines(
    caplog: pytest.LogCaptureFixture,
    flood: Callable[[RelayCore], None],
    limits: dict[str, int],
    hint: str,
) -> None:
    core = make_core(licence_key="K" if flood is refuse_licence else "", **limits)
    with caplog.at_level(logging.DEBUG, logger="pyhbb"):
        caplog.clear()
        flood(core)
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    refusals = [r for r in lines if hint in r.getMessage()]
    assert 1 <= len(refusals) <= MOST, [r.getMessage() for r in lines]
    assert len(lines) - len(refusals) <= 1  # the one accepted waiter, if any
    if flood is not refuse_handshakes:  # (net.conn_limits words its own line)
        assert f"({2 ** (MOST - 1)} refused so far)" in refusals[-1].getMessage()
