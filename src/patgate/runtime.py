"""The running pieces built from settings: the engine, sessions and service contexts."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from patgate.clock import Clock, SystemClock
from patgate.config import Settings
from patgate.context import Context
from patgate.db import make_engine, make_session_factory

_startup_frozen = False


def _freeze_startup_objects() -> None:
    """Once per process: leave what start-up built (modules, models, their metadata) to
    reference counting alone. Handling a request allocates enough that the collector's full
    passes come every few requests under load, and each one walked those ~100k objects: a
    pause of tens of milliseconds in whatever request ran it (``docs/performance.md``)."""
    global _startup_frozen
    if not _startup_frozen:
        _startup_frozen = True
        gc.collect()  # nothing already unreachable is frozen with them
        gc.freeze()


@dataclass
class Runtime:
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    engine: Engine = field(init=False)
    sessions: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        if self.settings.is_sqlite:
            path = self.settings.database_url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(self.settings.database_url)
        self.sessions = make_session_factory(self.engine)
        # Every process that writes wakes the workers when it commits outbox rows, and tells
        # every cache of authorization facts when it commits a change to them.
        from patgate.authz.cache import install_generation_bump
        from patgate.worker import install_outbox_notify

        install_outbox_notify(self.sessions)
        install_generation_bump(self.sessions)
        _freeze_startup_objects()

    @contextmanager
    def unit_of_work(self) -> Iterator[Context]:
        """A service context in one transaction: committed on success, rolled back on error."""
        with self.sessions() as session, session.begin():
            yield self.context(session)

    def context(self, session: Session) -> Context:
        return Context(
            session=session,
            now=self.clock.now(),
            base_url=self.settings.base_url,
            opt_in_required=self.settings.fine_grained_opt_in,
        )

    def close(self) -> None:
        self.engine.dispose()
