"""Logs: connections (one row per session), file transfers, alarms, sign-ins."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from pyhbb.api import audit_log
from pyhbb.api.console.web import Call, Console
from pyhbb.api.http import ApiError

KINDS: dict[str, tuple[str, Callable[..., audit_log.LogPage]]] = {
    "connections": ("Connections", audit_log.connections),
    "files": ("File transfers", audit_log.files),
    "alarms": ("Alarms", audit_log.alarms),
    "signins": ("Sign-ins", audit_log.sign_ins),
}


def _day(text: str, label: str, end: bool) -> float | None:
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ApiError(f"{label}: a date as YYYY-MM-DD") from None
    return (day + timedelta(days=1) if end else day).timestamp()


def routes(console: Console) -> list[Route]:
    def make(kind: str) -> Route:
        title, query = KINDS[kind]

        async def show(call: Call) -> Response:
            device = call.query("device", max_len=100).strip()
            who = call.query("user" if kind == "signins" else "who", max_len=100).strip()
            since_text = call.query("from", max_len=10)
            until_text = call.query("to", max_len=10)
            before_text = call.query("before", max_len=20)
            if before_text and not before_text.isdigit():
                raise ApiError("'before' is a number")
            f = audit_log.LogFilter(
                device=device,
                who=who,
                since=_day(since_text, "From", False),
                until=_day(until_text, "To", True),
                before=int(before_text) if before_text else None,
            )
            viewer = call.user
            page = await call.ctx.read(lambda c: query(c, viewer, f))
            params = {
                "device": device,
                "user" if kind == "signins" else "who": who,
                "from": since_text,
                "to": until_text,
            }
            params = {k: v for k, v in params.items() if v}
            next_link = ""
            if page.next_before is not None:
                next_link = f"/logs/{kind}?" + urlencode({**params, "before": page.next_before})
            return call.render(
                "logs.html",
                kind=kind,
                kinds={k: t for k, (t, _) in KINDS.items()},
                title=title,
                rows=page.rows,
                filters={"device": device, "who": who, "from": since_text, "to": until_text},
                first_link=f"/logs/{kind}?" + urlencode(params),
                next_link=next_link,
            )

        show.__name__ = f"logs_{kind}"
        return Route(f"/logs/{kind}", console.page(show), methods=["GET"])

    return [make(kind) for kind in KINDS]
