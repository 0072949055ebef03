"""CPython's cyclic garbage collector, set for a process that streams heartbeats through.

With the defaults, a young-generation pass runs every 700 container allocations and whatever it finds alive
moves up, to be traversed again by the older generations' passes, and a full pass traverses every container
of the process, the tens of thousands that importing the libraries made included. A heartbeat in flight is a
handful of containers (the record, the `Message`, its `Decoded` and `Accepted`, the batch's lists) that live
until its batch commits, so every pass finds thousands alive and the full passes come often: the collector
was the largest single part of the ingest process's CPU a heartbeat (bench/README, "The garbage
collector"). Almost nothing on the hot path makes reference cycles; reference counting frees it.

So, once started: what exists then is frozen (the permanent generation, never traversed again: modules,
settings, routes, all living as long as the process), and passes run far less often. Cycles are still
collected, at most `YOUNG_PASS_EVERY` container allocations late, which bounds the memory they can hold.
"""

import gc

# Container allocations between young-generation passes (CPython's default: 700).
YOUNG_PASS_EVERY = 50_000
# Young passes between middle-generation passes (default 10): what survives a young pass is mostly a
# heartbeat still waiting for its batch's commit, freed by reference counting soon after.
MIDDLE_PASS_EVERY = 20
# Middle passes between full passes (the default; CPython also waits for the old generation to grow by a
# quarter).
FULL_PASS_EVERY = 10


def settle_for_streaming() -> None:
    """Collect what start-up left, freeze the rest, and space the passes out (above). Process-wide: for the
    long-running commands only, never in a library call."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_PASS_EVERY, MIDDLE_PASS_EVERY, FULL_PASS_EVERY)
