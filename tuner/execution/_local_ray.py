"""Start a local Ray that leaves Ray's one fixed port to other clusters on the machine.

Every Ray node runs a dashboard agent whose HTTP server (the one job submission goes through)
binds port 52365 unless told otherwise. Two Ray clusters on one machine therefore collide: the
second one's agent cannot bind, and every ``ray job submit`` to that second cluster fails with
"No available agent to submit job" (ray-project/ray#14763, #51925). tuner's own clusters (the
embedded default of a study, and the long-lived head of ``tuner up``) submit no jobs, yet they
would take that port first and break a Ray the user starts later for their own work. Ray picks a
free port when asked for port 0, as ``ray start --dashboard-agent-listen-port 0`` does, but
``ray.init`` has no argument for it: :func:`init_local` passes it through the one place
``ray.init`` builds a node's parameters.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Iterator

import ray

__all__ = ["init_local"]


def init_local(**kwargs: Any) -> Any:
    """``ray.init(address="local", **kwargs)``, with the dashboard agent on a free port.

    Returns what ``ray.init`` returns. On a Ray whose node parameters have no such field, it is
    plain ``ray.init`` (the port then stays Ray's default)."""
    with _agent_on_any_port():
        return ray.init(address="local", **kwargs)


@contextlib.contextmanager
def _agent_on_any_port() -> Iterator[None]:
    from ray._private import parameter

    original = parameter.RayParams.__init__
    if "dashboard_agent_listen_port" not in inspect.signature(original).parameters:
        yield
        return

    def init(self: Any, *args: Any, **kw: Any) -> None:
        kw.setdefault("dashboard_agent_listen_port", 0)
        original(self, *args, **kw)

    parameter.RayParams.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        parameter.RayParams.__init__ = original  # type: ignore[method-assign]
