# Reconnect delays: exponential, capped, with jitter.
#
# Every node in a building loses the broker at the same moment (a Pi
# reboot, an AP restart); without jitter they all come back in the same
# second, every time. "Equal jitter": half the exponential step is fixed,
# half is random, so a delay is never near zero and never above the cap.
import random


def _uniform():
    return random.getrandbits(16) / 65536


class Backoff:
    def __init__(self, base_s=2.0, cap_s=300.0, rand=_uniform):
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("need 0 < base_s <= cap_s")
        self.base_s = base_s
        self.cap_s = cap_s
        self.rand = rand

    def delay(self, failures):
        """Seconds to wait after `failures` consecutive failures (1, 2, ...)."""
        if failures <= 0:
            return 0.0
        # 2**30 is far above any cap; the min keeps the power bounded.
        step = min(self.cap_s, self.base_s * (1 << min(failures - 1, 30)))
        return step / 2 + self.rand() * step / 2
