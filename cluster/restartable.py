"""The batch job's actors restart from values, not from object-store refs.

Ray Data (2.60) hands every actor of an `ActorPoolStrategy` stage its constructor arguments (the
stage's map transformer, which holds our `BatchJob`, and the DataContext) as refs it `ray.put`.
Ray core restarts an actor (Ray Data sets `max_restarts=-1`) by rerunning its creation task, and
an argument in the object store may be gone by then: Ray warns at each actor's creation
("has constructor arguments in the object store and max_restarts > 0", ray-project/ray#53727).
Ours are a few KiB (a `BatchJob` pickles to ~2 KiB, the DataContext to ~6 KiB), so Ray inlines
them in the creation task itself when they are passed as values: a restarted actor rebuilds
from its own task spec, whatever happened to the object store.

A value over Ray's inline limit (100 KiB: a job with many known-speaker clips) is still put in
the object store by Ray, owned by the job's driver for the job's lifetime.
"""

from __future__ import annotations

import logging

log = logging.getLogger("whisperx_serve.batch")


def pass_actor_arguments_by_value() -> bool:
    """Make Ray Data's actor pools create their actors with inline arguments. False (and Ray
    Data's own behaviour) where this Ray Data lacks the attributes this relies on."""
    try:
        from ray.data._internal.execution.operators.actor_pool_map_operator import ActorPoolMapOperator
        from ray.data._internal.execution.operators.map_operator import MapOperator
    except ImportError:
        return False
    if not all(hasattr(MapOperator, name) for name in ("_map_transformer_ref", "_data_context_ref")):
        log.warning("this Ray Data passes actor arguments differently; its actors keep object-store arguments")
        return False
    # Properties on the subclass take precedence over MapOperator's cached refs; task-pool
    # stages (MapOperator's other subclass) keep their refs, which retried tasks resolve.
    ActorPoolMapOperator._map_transformer_ref = property(lambda self: self._map_transformer)
    ActorPoolMapOperator._data_context_ref = property(lambda self: self.data_context)
    return True
