"""Random seed-frame cases shared by the cross-encoder tests: lines for the
C and Rust harnesses ("c t h b", "p t h b", "b base n d1 v1 ...") and the
frame wire.py makes for each, or "err" where wire.py refuses the values.
Some values are out of range on purpose: every encoder must refuse them."""
import random

import support  # noqa: F401  (puts lib/ on the path)

import wire


def _expected(fn, *args):
    try:
        return fn(*args).hex()
    except ValueError:
        return "err"


def cases(seed=4, n=3000, batches=200):
    rng = random.Random(seed)
    lines, want = [], []
    for _ in range(n):
        t, h, b = rng.uniform(-45, 110), rng.uniform(-5, 260), rng.uniform(-0.5, 5)
        lines.append("c %r %r %r" % (t, h, b))
        want.append(_expected(wire.compact_i16, t, h, b))
        bp = rng.uniform(-5, 130)
        lines.append("p %r %r %r" % (t, h, bp))
        want.append(_expected(wire.bitpacked, t, h, bp))
    for _ in range(batches):
        base = rng.randrange(0, 2**32)
        readings = [(rng.randrange(0, 65536), rng.uniform(-1e6, 1e6)) for _ in range(rng.randrange(0, 20))]
        lines.append("b %d %d %s" % (base, len(readings), " ".join("%d %r" % r for r in readings)))
        want.append(_expected(wire.batch, base, readings))
    # Exact halves, where rounding conventions part ways.
    for t in (21.25, -21.25, 0.05, -0.05, 21.3, 3276.75):
        lines.append("c %r 40 3.3" % t)
        want.append(_expected(wire.compact_i16, t, 40, 3.3))
    return lines, want


def normalise(got):
    return "err" if got.startswith("err") else got
