"""One driver per study: a lease row, taken atomically and kept alive by a heartbeat.

Two drivers on one study (``tuner resume S`` while ``tuner submit S`` still runs) would both
sample, number and requeue trials: duplicates and lost results. So the driver that runs a study
holds ``tuner_leases``' row for it, renewed every :data:`RENEW_S`; anyone else is refused with who
holds it. A lease whose heartbeat is older than :data:`STALE_S`, or whose holder is a dead process
on this very host (a SIGKILLed driver), is stale and is taken over by the next ``resume``.
Times are UTC from each party's clock: clusters keep clocks within seconds, far inside the window.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tuner.storage._tables import LeaseRow

__all__ = ["Holder", "RENEW_S", "STALE_S", "new_holder", "acquire", "renew", "release",
           "holder_of"]

RENEW_S = 2.0
STALE_S = 30.0


@dataclass(frozen=True)
class Holder:
    owner: str
    host: str
    pid: int
    since: dt.datetime
    heartbeat: dt.datetime

    def describe(self, now: dt.datetime) -> str:
        ago = max(0, int((now - self.heartbeat).total_seconds()))
        return (f"pid {self.pid} on host {self.host} since {self.since:%Y-%m-%d %H:%M:%S} UTC "
                f"(last heartbeat {ago} s ago)")

    def stale(self, now: dt.datetime, stale_s: float = STALE_S) -> bool:
        if (now - self.heartbeat).total_seconds() > stale_s:
            return True
        return self.host == socket.gethostname() and not _alive(self.pid)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def new_holder() -> Holder:
    now = _now()
    return Holder(uuid.uuid4().hex, socket.gethostname(), os.getpid(), now, now)


def holder_of(conn: Connection, study_id: int) -> Holder | None:
    row = conn.execute(sa.select(LeaseRow.owner, LeaseRow.host, LeaseRow.pid, LeaseRow.since,
                                 LeaseRow.heartbeat).where(LeaseRow.study_id == study_id)
                       .with_for_update()).first()
    return None if row is None else Holder(*row)


def acquire(conn: Connection, study_id: int, me: Holder, stale_s: float = STALE_S) -> Holder | None:
    """Take the study's lease for ``me`` inside ``conn``'s transaction. Returns None when taken,
    or the live holder that refuses it. A stale holder is replaced by compare-and-set, so two
    drivers taking over the same stale lease cannot both win. A concurrent first insert raises
    IntegrityError: the caller's transaction fails and nothing is taken."""
    current = holder_of(conn, study_id)
    if current is None:
        conn.execute(sa.insert(LeaseRow).values(study_id=study_id, owner=me.owner, host=me.host,
                                                pid=me.pid, since=me.since, heartbeat=me.heartbeat))
        return None
    if current.owner != me.owner and not current.stale(_now(), stale_s):
        return current
    swapped = conn.execute(sa.update(LeaseRow).where(
        LeaseRow.study_id == study_id, LeaseRow.owner == current.owner,
        LeaseRow.heartbeat == current.heartbeat,
    ).values(owner=me.owner, host=me.host, pid=me.pid, since=me.since, heartbeat=_now())).rowcount
    return None if swapped == 1 else holder_of(conn, study_id)


def renew(conn: Connection, study_id: int, owner: str) -> bool:
    """Heartbeat; False means the lease is no longer ours (taken over while we were silent)."""
    return conn.execute(sa.update(LeaseRow).where(
        LeaseRow.study_id == study_id, LeaseRow.owner == owner).values(heartbeat=_now())).rowcount == 1


def release(conn: Connection, study_id: int, owner: str) -> None:
    conn.execute(sa.delete(LeaseRow).where(LeaseRow.study_id == study_id, LeaseRow.owner == owner))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
