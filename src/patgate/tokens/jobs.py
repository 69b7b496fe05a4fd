"""``last_used_at`` kept off the request path: buffered in memory, written at most once a
minute per token by a background flush."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import Engine, update

from patgate.tokens.models import ClassicToken, FineGrainedToken

log = logging.getLogger(__name__)

WRITE_INTERVAL = timedelta(minutes=1)


class LastUsedBuffer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], datetime] = {}
        self._written: dict[tuple[str, int], datetime] = {}

    def touch(self, kind: str, token_id: int, at: datetime) -> None:
        """Note a use; cheap enough for every request (a dict write under a lock)."""
        key = (kind, token_id)
        last = self._written.get(key)
        if last is not None and at - last < WRITE_INTERVAL:
            return
        with self._lock:
            self._pending[key] = at

    def flush(self, engine: Engine) -> int:
        """Write the buffered uses; returns how many tokens were updated."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            with engine.begin() as conn:
                for (kind, token_id), at in pending.items():
                    model = FineGrainedToken if kind == "fine_grained" else ClassicToken
                    conn.execute(update(model).where(model.id == token_id).values(last_used_at=at))
        except Exception:
            log.exception("could not record token use; will retry")
            with self._lock:
                for key, at in pending.items():
                    self._pending.setdefault(key, at)
            return 0
        self._written.update(pending)
        if len(self._written) > 100_000:  # bounded: forget the oldest half
            for key in list(self._written)[:50_000]:
                del self._written[key]
        return len(pending)
