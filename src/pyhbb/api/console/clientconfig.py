"""What makes a RustDesk client use this server, in the forms the client reads.

Facts from the client (1.4.x):

* **Configuration string** ("Import server config" in the client's network settings,
  and ``rustdesk --config <string>``): the JSON object ``{"host", "relay", "api",
  "key"}`` encoded as URL-safe base64, then the text reversed. The Flutter decoder
  normalises the base64 (padding optional, either alphabet); the command line and the
  installer name decode URL-safe base64 *without* padding, so we never pad.
* **QR code** (the mobile app's scanner): the text ``config=`` followed by that string.
* **Installer name** (Windows ``.exe``): the client reads its own file name. Either
  ``rustdesk-host=<host>,key=<key>,.exe`` (values split at commas; the final comma keeps
  a ``(1)`` that Windows adds to a second download out of the last value), or
  ``rustdesk-licensed-<string>.exe``, where the name is split at ``--`` (and
  ``-licensed-`` counts as one). The readable form cannot carry characters that Windows
  forbids in file names (``:`` of a port, ``/`` of a base64 key), nor ``,``; the
  encoded form always works, as long as the string has no ``--`` and does not start or
  end with ``-``, which :func:`config_string` guarantees by choosing the JSON spacing.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

QR_PREFIX = "config="
WINDOWS_FORBIDDEN = set('<>:"/\\|?*,') | {chr(c) for c in range(32)}


@dataclass(frozen=True)
class ClientConfig:
    host: str
    """ID server, ``host[:port]`` (the port may be left out when it is 21116)."""
    relay: str
    """Relay server; empty lets the client ask hbbs / derive it from the host."""
    api: str
    """API server URL; empty lets the client derive ``http://host:21114``."""
    key: str
    """hbbs's public key (base64), which the client checks."""

    def fields(self) -> dict[str, str]:
        return {"host": self.host, "relay": self.relay, "api": self.api, "key": self.key}


def _encode(text: str) -> str:
    raw = base64.urlsafe_b64encode(text.encode("utf-8")).decode().rstrip("=")
    return raw[::-1]


def _safe_for_names(encoded: str) -> bool:
    return "--" not in encoded and not encoded.startswith("-") and not encoded.endswith("-")


def config_string(config: ClientConfig) -> str:
    """The string the client imports; usable in an installer name as well."""
    fields = config.fields()
    # Different spacings of the same JSON give different base64; every decoder parses
    # them alike. Take the first whose encoding splits nowhere in a file name.
    separators = [(",", ":"), (", ", ":"), (",", ": "), (", ", ": ")]
    for pad in range(4):
        for item, key in separators:
            text = json.dumps(fields, separators=(item, key), ensure_ascii=False) + " " * pad
            encoded = _encode(text)
            if _safe_for_names(encoded):
                return encoded
    return _encode(json.dumps(fields, separators=(",", ":"), ensure_ascii=False))


def decode_config_string(text: str) -> dict[str, str]:
    """The client's decoding (for tests and for the page's own check)."""
    reversed_text = text.strip()[::-1]
    raw = base64.urlsafe_b64decode(reversed_text + "=" * (-len(reversed_text) % 4))
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return {k: str(v) for k, v in value.items()}


def qr_text(config: ClientConfig) -> str:
    return QR_PREFIX + config_string(config)


def qr_svg(text: str) -> str:
    """The QR code as an inline ``<svg>`` element (no XML declaration, scalable)."""
    import segno  # only the server page needs it: keep it out of the API's start-up

    code = segno.make(text, error="m", micro=False)
    svg: str = code.svg_inline(scale=4, border=4, dark="#000", light="#fff", omitsize=True)
    return svg


def readable_installer_name(config: ClientConfig) -> str | None:
    """``rustdesk-host=…,key=…,.exe`` (the API then derived from the host), or None when
    a value cannot be in a Windows file name (a port's ``:``, a ``/`` in the key)."""
    parts = [f"host={config.host}"]
    if config.key:
        parts.append(f"key={config.key}")
    if any(ch in WINDOWS_FORBIDDEN for value in (config.host, config.key) for ch in value):
        return None
    return f"rustdesk-{','.join(parts)},.exe"


def encoded_installer_name(config: ClientConfig) -> str:
    return f"rustdesk-licensed-{config_string(config)}.exe"
