#!/usr/bin/env python3
"""How a time window's CPU went to groups of threads, from `perf sched`.

    perf sched record -o sched.data            # system-wide, during the pass
    perf sched timehist --state -i sched.data > th.txt
    scripts/sched-share.py th.txt T0 T1 'gw=tokio-rt-worker\\[\\d+/PID\\]' \\
        'sender=\\[SPID\\]|/SPID\\]' 'burner=^sh\\[BPID\\]'

For each group (name=regex on timehist's task column): the cores it ran
and the cores it ran or waited runnable (woken or preempted, not yet on a
CPU), over [T0, T1]. For the group named `gw`, the share of the window in
which 0, 1, 2, ... of its threads ran, and ran or waited. A group that
wants more cores than it gets is CPU-bound, not waiting on I/O or locks.
"""
import collections
import re
import sys


def main():
    path, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    groups = dict(a.split("=", 1) for a in sys.argv[4:])
    ran, wanted = collections.defaultdict(list), collections.defaultdict(list)
    last_state = {}
    for line in open(path):
        p = line.split()
        if len(p) < 7 or not p[0][0].isdigit():
            continue
        try:
            end, gap, delay, run = float(p[0]), *(float(x) / 1000 for x in p[-4:-1])
        except ValueError:
            continue
        task = p[2]
        # timehist counts only wake-up to run as delay; after a preemption
        # (state R when switched out) the whole gap was spent runnable.
        if last_state.get(task) == "R":
            delay = gap
        last_state[task] = p[-1]
        for g, rx in groups.items():
            if re.search(rx, task):
                for spans, s in ((ran, end - run), (wanted, end - run - delay)):
                    s, e = max(s, t0), min(end, t1)
                    if e > s:
                        spans[g].append((s, e))
    width = t1 - t0
    for g in groups:
        r = sum(e - s for s, e in ran[g]) / width
        w = sum(e - s for s, e in wanted[g]) / width
        print(f"{g:8s} ran {r:5.2f} cores, ran or runnable {w:5.2f}")
    for what, spans in (("ran", ran), ("ran or runnable", wanted)):
        print(f"gw threads that {what} at once:", at_once(spans["gw"], t0, t1))


def at_once(spans, t0, t1):
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now, last, share = 0, t0, collections.Counter()
    for t, d in edges:
        share[now] += t - last
        last, now = t, now + d
    share[now] += t1 - last
    return {k: round(v / (t1 - t0), 3) for k, v in sorted(share.items())}


if __name__ == "__main__":
    main()
