"""Reading HTML form posts: bounded, typed fields; a bad one is a 400 naming it.

Only ``application/x-www-form-urlencoded`` is accepted (every form of the console is):
parsed with the standard library, at most :data:`MAX_FIELDS` fields, inside the body
cap the API applies to every request.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from pyhbb.api.http import ApiError

MAX_FIELDS = 200


class Form:
    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields

    @classmethod
    async def read(cls, request: Request) -> Form:
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise ApiError("this address takes a form post (application/x-www-form-urlencoded)")
        body = await request.body()
        try:
            pairs = parse_qsl(
                body.decode("utf-8"),
                keep_blank_values=True,
                max_num_fields=MAX_FIELDS,
                strict_parsing=False,
            )
        except (UnicodeDecodeError, ValueError):
            raise ApiError("the form could not be read (bad encoding or too many fields)") from None
        fields: dict[str, str] = {}
        for name, value in pairs:
            fields.setdefault(name, value)  # the first of repeated fields counts
        return cls(fields)

    def get(self, name: str) -> str | None:
        return self.fields.get(name)

    def text(self, name: str, label: str, *, max_len: int = 256, required: bool = False) -> str:
        value = self.fields.get(name, "")
        if "\x00" in value or len(value) > max_len:
            raise ApiError(f"{label}: at most {max_len} characters, no NUL")
        if required and not value.strip():
            raise ApiError(f"{label} is required")
        return value

    def flag(self, name: str) -> bool:
        """A checkbox: present (any value) means on."""
        return name in self.fields

    def choice(self, name: str, label: str, choices: dict[str, int]) -> int:
        value = self.fields.get(name, "")
        if value not in choices:
            raise ApiError(f"{label}: choose one of {', '.join(choices)}")
        return choices[value]
