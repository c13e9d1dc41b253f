"""A token bucket: at most `rate` events a second on average, bursts up to `burst`.

Pure: time is passed in (monotonic seconds). Used to bound expensive requests
(`history`) and, in the relay, each browser's publishes.
"""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend `cost` tokens if there are enough; False (and nothing spent) otherwise."""
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens will be there (as of the last take)."""
        return max(0.0, (cost - self._tokens) / self.rate)
