"""The server page (admins): what clients need, relays, block lists and counters.

Addresses come from ``--public-host`` or else the host this page was opened with. The
ID server is that host (with hbbs's port, ``--hbbs`` + 1, when it is not 21116), the
API this console's own URL. The key is hbbs's ``id_ed25519.pub`` in the working
directory (the API runs next to hbbs). Relays, block lists and counters are read from
and changed in the running hbbs and hbbr through their loopback consoles, as admins do
by hand; changes last until that server restarts (the page says how to keep them).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyhbb.api.console import clientconfig, security, servers
from pyhbb.api.console.servers import ConsoleUnavailable, ServerConsole
from pyhbb.api.console.web import Call, Console
from pyhbb.api.http import ApiError
from pyhbb.config.options import split_host_port
from pyhbb.wire.keys import PUBLIC_FILE

DEFAULT_HBBS_PORT = 21116
MAX_KEY_FILE = 1024


@dataclass
class Answer:
    """One console command's output, or why there is none."""

    text: str = ""
    error: str = ""


async def ask(target: ServerConsole, *words: str) -> Answer:
    try:
        return Answer(await target.run(*words))
    except ConsoleUnavailable as e:
        return Answer(error=str(e))


def read_key(workdir: Path) -> str:
    try:
        raw = (workdir / PUBLIC_FILE).read_bytes()[:MAX_KEY_FILE]
    except OSError:
        return ""
    return raw.decode("ascii", "replace").strip()


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def client_config(call: Call, relays: list[str]) -> tuple[clientconfig.ClientConfig, str]:
    """The configuration for clients, and a warning when the host is probably wrong."""
    request: Request = call.request
    options = call.ctx.options
    trusted = request.client is not None and call.ctx.is_trusted(request.client.host)
    seen = security.public_host(request, trusted)
    try:
        seen_host, _ = split_host_port(seen, options.port) if seen else ("", 0)
    except ValueError:
        seen_host = ""
    host = options.public_host or seen_host
    warning = ""
    if not options.public_host:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback or not host:
            warning = (
                "This page was opened through a loopback address, so the addresses below "
                "name this machine only; open the console by its public name, or start the "
                "API server with --public-host."
            )
    hbbs_port = options.hbbs_port + 1  # --hbbs names P-1
    id_server = (
        _bracket(host) if hbbs_port == DEFAULT_HBBS_PORT else f"{_bracket(host)}:{hbbs_port}"
    )
    scheme = "https" if security.is_https(request, trusted) else "http"
    api = f"{scheme}://{seen}" if seen else ""
    if options.public_host:
        api = f"{scheme}://{_bracket(host)}" + ("" if scheme == "https" else f":{options.port}")
    relay = relays[0] if relays else ""
    key = read_key(options.workdir)
    return clientconfig.ClientConfig(id_server, relay, api, key), warning


def routes(console: Console) -> list[Route]:
    async def page(call: Call) -> Response:
        hbbs, hbbr = console.hbbs, console.hbbr
        answers = await asyncio.gather(
            ask(hbbs, "rs"),
            ask(hbbs, "stats"),
            ask(hbbs, "ib"),
            ask(hbbs, "aur"),
            ask(hbbr, "B"),
            ask(hbbr, "b"),
            ask(hbbr, "usage"),
            ask(hbbr, "ls"),
            ask(hbbr, "tb"),
            ask(hbbr, "sb"),
        )
        rs, stats, ib, aur, blocklist, blacklist, usage, ls, tb, sb = answers
        relays = servers.parse_lines(rs.text)
        config, warning = client_config(call, relays)
        string = clientconfig.config_string(config)
        qr = clientconfig.qr_text(config)
        ib_lines = servers.parse_lines(ib.text)
        return call.render(
            "server.html",
            config=config,
            warning=warning,
            config_string=string,
            qr_text=qr,
            qr_svg=clientconfig.qr_svg(qr),
            readable_name=clientconfig.readable_installer_name(config),
            encoded_name=clientconfig.encoded_installer_name(config),
            hbbs_address=hbbs.address,
            hbbr_address=hbbr.address,
            relays=relays,
            relays_error=rs.error,
            stats=servers.parse_pairs(stats.text),
            stats_error=stats.error,
            blocker_count=ib_lines[0] if ib_lines else "",
            blocker=[line.split(": ", 1) for line in ib_lines[1:] if ": " in line],
            always_relay=aur.text.strip(),
            blocklist=servers.parse_lines(blocklist.text),
            blacklist=servers.parse_lines(blacklist.text),
            hbbr_error=blocklist.error,
            usage=servers.parse_lines(usage.text),
            bandwidth={"limit-speed": ls.text.strip(), "total-bandwidth": tb.text.strip(),
                       "single-bandwidth": sb.text.strip()},
        )  # fmt: skip

    async def run_or_fail(target: ServerConsole, *words: str) -> str:
        try:
            return await target.run(*words)
        except ConsoleUnavailable as e:
            raise ApiError(f"Not applied: {e}.", 409) from None

    async def set_relays(call: Call) -> Response:
        text = call.form.text("relays", "Relay servers", max_len=1000).replace(" ", "")
        entries = [e for e in text.split(",") if e]
        for entry in entries:
            try:
                split_host_port(entry, 21117)
            except ValueError:
                raise ApiError(f"{entry!r} is not host[:port].") from None
        if not entries:
            raise ApiError("Give at least one relay server (host[:port], comma-separated).")
        await run_or_fail(console.hbbs, "rs", ",".join(entries))
        return call.redirect(
            "/server", "Relay servers sent to hbbs (entries it cannot resolve are dropped)."
        )

    def ip_field(call: Call) -> str:
        text = call.form.text("ip", "IP address", max_len=64, required=True).strip()
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise ApiError(f"{text!r} is not an IP address.") from None

    async def block(call: Call) -> Response:
        ip = ip_field(call)
        await run_or_fail(console.hbbr, "Ba", ip)
        return call.redirect("/server", f"{ip} is on hbbr's block list now.")

    async def unblock(call: Call) -> Response:
        ip = ip_field(call)
        await run_or_fail(console.hbbr, "Br", ip)
        return call.redirect("/server", f"{ip} removed from hbbr's block list.")

    async def forgive(call: Call) -> Response:
        ip = ip_field(call)
        await run_or_fail(console.hbbs, "ib", ip, "-")
        return call.redirect("/server", f"hbbs's rate-limit entry of {ip} removed.")

    return [
        Route("/server", console.page(page, admin=True), methods=["GET"]),
        Route("/server/relays", console.page(set_relays, admin=True), methods=["POST"]),
        Route("/server/block", console.page(block, admin=True), methods=["POST"]),
        Route("/server/unblock", console.page(unblock, admin=True), methods=["POST"]),
        Route("/server/forgive", console.page(forgive, admin=True), methods=["POST"]),
    ]
