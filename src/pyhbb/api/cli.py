"""``pyhbb api``: run the API server in the working directory (next to hbbs's files)."""

from __future__ import annotations

import os
import sys

from pyhbb.api.options import parse_api_options
from pyhbb.config.sources import ConfigError
from pyhbb.net.sockets import BindError
from pyhbb.observability.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    setup_logging(os.environ.get("RUST_LOG"))
    try:
        options = parse_api_options(argv)
    except ConfigError as e:
        print(f"pyhbb api: {e}", file=sys.stderr)
        return 2
    from pyhbb.api.server import run

    try:
        return run(options)
    except BindError as e:
        print(f"pyhbb api: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
