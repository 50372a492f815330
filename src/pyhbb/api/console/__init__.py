"""The web console (docs/api.md #36): server-rendered pages in the API service.

It reads and changes the same tables through the same repositories and decisions as the
client API (accounts, devices, address books, audit), and asks hbbs and hbbr through
their loopback consoles for what only they know (online state, relays, block lists,
counters). Pages are Jinja2 templates; a few lines of plain JavaScript refresh the
online dots, and every page works without it.

Modules: ``sessions`` (browser sign-in sessions), ``security`` (CSRF, cookies, same
origin), ``forms`` (bounded form fields), ``web`` (rendering, the handler wrappers
that check who is asking), ``clientconfig`` (the client configuration string, QR code
and installer name), ``servers`` (hbbs/hbbr loopback consoles), ``routes/`` (one
module per page group), ``app`` (the route table).
"""
