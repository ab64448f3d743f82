"""What a hook's model calls cost: calls, retries and throttles, for osml's ``ModelInvocation`` metrics (spec 7).

osml-model-runner reports Retries as always 0 for HTTP endpoints (spec 11 Q15); the hooks count what their
retry layers (urllib3, botocore) really did. Tile threads share one hook, so the counts are locked.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class InvocationCounts:
    calls: int = 0  # model calls that were made, each including its transport-level retries
    retries: int = 0  # extra requests sent by the retry layers
    throttles: int = 0  # answers that said "slow down" (HTTP 429, ThrottlingException)
    errors: int = 0  # calls that failed after their retries
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, calls: int = 0, retries: int = 0, throttles: int = 0, errors: int = 0) -> None:
        with self._lock:
            self.calls += calls
            self.retries += retries
            self.throttles += throttles
            self.errors += errors

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {"calls": self.calls, "retries": self.retries, "throttles": self.throttles,
                    "errors": self.errors}
