"""Model workers: where a model runs when it does not run inside the daemon's own process.

- ``process``: ``ProcessInvoker`` keeps one model in a worker subprocess (``main``) and
  speaks msgpack frames to it over a Unix socket (``protocol``): token streaming,
  cancellation, big payloads through shared memory files. A crash there is a
  ``CrashReport`` and a ``WorkerCrashed`` error for its callers, never the daemon's death.
- ``ray``: ``RayInvoker`` keeps the model in a Ray actor on a node of a Ray cluster
  (``core.workers.ray``; needs the ``loomd[ray]`` extra).

The pool (``core.pool``) picks the placement, starts and stops invokers and turns a
worker's death into a ``ModelCrashed`` event, a released reservation and, after repeated
crashes, a model marked failed. See docs/workers.md and docs/cluster.md.
"""

from .crash import CrashReport, WorkerCrashed, WorkerGone
from .process import ProcessInvoker, WorkerStartError, backend_path

PLACEMENTS = ("auto", "inline", "process", "ray")

__all__ = ["PLACEMENTS", "CrashReport", "ProcessInvoker", "WorkerCrashed", "WorkerGone", "WorkerStartError",
           "backend_path"]
