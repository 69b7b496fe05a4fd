"""A local SMTP server for goal 4 (aiosmtpd), in a process of its own so that it does not
share the worker's interpreter: counts what it receives.

``python -m benchmarks.smtp_sink --port N`` prints ``ready`` once it accepts connections,
then runs until its standard input closes, and prints ``{"messages": n, "bytes": b}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from aiosmtpd.controller import Controller


class Counter:
    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        self.bytes += len(envelope.content or b"")
        return "250 OK"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    counter = Counter()
    controller = Controller(counter, hostname="127.0.0.1", port=args.port)
    controller.start()
    try:
        print("ready", flush=True)
        sys.stdin.read()
    finally:
        controller.stop()
    summary = {"messages": counter.messages, "bytes": counter.bytes, "cpu_s": time.process_time()}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
