"""Structured logs: plain or JSON lines, with the rollout and zone on every line that has them."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_ROLLOUT = re.compile(r"^([a-z0-9-]+/[a-z0-9-]+): ")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "message": msg}
        rollout = getattr(record, "rollout", None)
        m = _ROLLOUT.match(msg)
        if rollout is None and m:
            rollout = m.group(1)
        if rollout:
            out["rollout"] = rollout
        zone = getattr(record, "zone", None)
        if zone:
            out["zone"] = zone
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out)


def configure(json_lines: bool = False, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("git", "urllib3", "asyncssh", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
