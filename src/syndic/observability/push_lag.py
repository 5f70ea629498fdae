"""Config push lag, as the member sees it: the age of the oldest config change
applied here but not yet handed to a watching client.

The configuration centre pushes every change to its SDKs over etcd watches
on its key prefix. A change waits in the watch hub's per-watcher buffer
until the member's watch stream takes it to write it out; a client that
reads slowly, or a member too busy to serve its streams, leaves it there.
The probe times each applied revision (the member wakes its watch streams
after every apply, and the probe listens there too) and, when sampled,
finds the lowest revision still buffered for a watcher on the config
prefix: the lag is how long ago that revision was applied. Zero means
every change has left the hub.

What it does not see: bytes already taken by a stream and waiting in the
HTTP/2 send window, and the network to the SDK.
"""

from __future__ import annotations

import bisect
import collections
import time
from collections.abc import Callable
from typing import Any, Final

from syndic.config.keys import DEFAULT_PREFIX

# Applied revisions remembered with their time: at thousands of writes a
# second this covers about a second of history, beyond which an older event
# is timed by the oldest reading kept, so the lag is underestimated only
# when it is already past any alert threshold.
APPLY_TIMES_MAX: Final = 4096


class PushLagProbe:
    """See the module docstring. ``clock`` is monotonic seconds (injectable)."""

    def __init__(
        self,
        node: Any,
        prefix: bytes = DEFAULT_PREFIX.encode(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.prefix = prefix
        self.clock = clock
        # Parallel, ascending: revision, and when the member had applied it.
        self._revisions: collections.deque[int] = collections.deque(maxlen=APPLY_TIMES_MAX)
        self._at_s: collections.deque[float] = collections.deque(maxlen=APPLY_TIMES_MAX)
        self._unlisten: Callable[[], None] | None = None

    def start(self) -> None:
        if self._unlisten is None:
            self._unlisten = self.node.watch_listen(self._on_apply)

    def stop(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None

    def _on_apply(self) -> None:
        revision = int(self.node.hub.store.revision)
        if self._revisions and revision <= self._revisions[-1]:
            return  # a wake-up with nothing new applied
        self._revisions.append(revision)
        self._at_s.append(self.clock())

    def oldest_undelivered_revision(self) -> int | None:
        """The lowest revision buffered for a watcher on the prefix, if any."""
        oldest: int | None = self.node.hub.oldest_buffered_revision(self.prefix)
        return oldest

    def lag_s(self) -> float:
        oldest = self.oldest_undelivered_revision()
        if oldest is None or not self._revisions:
            return 0.0
        at = bisect.bisect_left(self._revisions, oldest)
        applied_s = self._at_s[min(at, len(self._at_s) - 1)] if at else self._at_s[0]
        return max(self.clock() - applied_s, 0.0)
