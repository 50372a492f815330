"""blacklist.txt and blocklist.txt in the working directory (§8.5): read at start-up."""

from __future__ import annotations

import logging
from pathlib import Path

from pyhbb.relay.lists import IpList

log = logging.getLogger(__name__)

BLACKLIST_FILE = "blacklist.txt"
BLOCKLIST_FILE = "blocklist.txt"


def read_ip_list(path: Path) -> IpList:
    """Each line: the text before the first space is an IP. A missing file is empty."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return IpList()
    except OSError as e:
        log.warning("cannot read %s (%s); treating it as empty", path, e.strerror)
        return IpList()
    return IpList(line.strip().split(" ", 1)[0] for line in text.split("\n"))
