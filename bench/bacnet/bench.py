"""How fast the bacnet adapter reads one device, beside bacpypes3's own
client reading the same device in the same run, and how many COV
notifications per second it handles. The device is bacpypes3 (the tests'
peer, crates/edge-gateway/tests/data/bacnet_peer.py) on loopback, in its
own process; the gateway is the real binary.

  bash scripts/peers-venv.sh
  target/peers-venv/bin/python bench/bacnet/bench.py target/debug/edge-gateway [OBJECTS] [SECONDS]

Prints, for each reader: present values per second (with status flags,
ReadPropertyMultiple of 40 objects a request, as the adapter batches for a
1476-byte APDU; for the gateway also net of the 100 ms it waits between
polls), the reader's CPU per value, and the device's CPU share;
then COV notifications per second handled by the gateway and its CPU per
notification. The gateway's CPU is the whole process (adapter, pipeline,
aggregation), the client's only its reading.
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = sys.argv[1]
OBJECTS = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 15.0
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PEER = os.path.join(ROOT, "crates/edge-gateway/tests/data/bacnet_peer.py")
# Objects per ReadPropertyMultiple: what the adapter fits in 1476 bytes.
BATCH = 40
COV_CHANGES = 20000
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime, fields 14 and 15 of proc(5), in clock ticks.
    return (int(fields[11]) + int(fields[12])) / TICK


def sample(port, name):
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def until(what, check, within=60.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


class Peer:
    def __init__(self, layout):
        self.p = subprocess.Popen(
            [sys.executable, "-u", PEER, json.dumps(layout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        if self.p.stdout.readline().strip() != "ready":
            raise SystemExit("the bacpypes3 device did not start")

    def command(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        answer = self.p.stdout.readline().strip()
        if answer != "ok":
            raise SystemExit(f"{line}: {answer}")

    def stop(self):
        self.p.kill()
        self.p.wait()


def gateway(state, metrics, body):
    cfg = os.path.join(state, f"gw{metrics}.toml")
    with open(cfg, "w") as f:
        f.write(f"""
[gateway]
id = "bench"
state_dir = "{state}/s{metrics}"

[aggregation]
window = "10s"

[metrics]
bind = "127.0.0.1:{metrics}"

# An output is required; the local dashboard is the one every site has.
[dashboard]
enabled = true
bind = "127.0.0.1:{free_port()}"

[log]
level = "warn"
{body}
""")
    return subprocess.Popen([BIN, "run", "-c", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def gateway_polling(state, device_port, peer_pid):
    metrics = free_port()
    gw = gateway(state, metrics, f"""
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:0"
poll = "100ms"
timeout = "3s"

[[bacnet.device]]
instance = 9001
address = "127.0.0.1:{device_port}"
id = "bench"
""")
    try:
        objects = 'edge_gateway_bacnet_objects{adapter="bms",device="bench"}'
        readings = 'edge_gateway_adapter_readings_total{adapter="bms"}'
        until("the gateway to read the device", lambda: sample(metrics, objects) == OBJECTS
              and (sample(metrics, readings) or 0) >= OBJECTS)
        r0, c0, d0, t0 = sample(metrics, readings), cpu_seconds(gw.pid), cpu_seconds(peer_pid), time.monotonic()
        time.sleep(SECONDS)
        r1, c1, d1, t1 = sample(metrics, readings), cpu_seconds(gw.pid), cpu_seconds(peer_pid), time.monotonic()
    finally:
        gw.terminate()
        gw.wait()
    values = r1 - r0
    # The adapter waits its poll period (100 ms, the least it accepts)
    # after each poll; the client below never waits. Both rates are shown.
    busy = (t1 - t0) - values / OBJECTS * 0.1
    return (values / (t1 - t0), values / busy), (c1 - c0) / values * 1e6, (d1 - d0) / (t1 - t0) * 100


async def bacpypes3_polling(device_port, peer_pid):
    from bacpypes3.ipv4.app import NormalApplication
    from bacpypes3.local.device import DeviceObject
    from bacpypes3.pdu import Address
    from bacpypes3.primitivedata import ObjectIdentifier, PropertyIdentifier
    from bacpypes3.vendor import get_vendor_info

    me = DeviceObject(objectIdentifier=("device", 9999), objectName="bench-client", vendorIdentifier=999)
    app = NormalApplication(me, Address(f"127.0.0.1:{free_port()}"))
    target = Address(f"127.0.0.1:{device_port}")
    vendor = get_vendor_info(999)
    props = [PropertyIdentifier("presentValue"), PropertyIdentifier("statusFlags")]
    ids = [ObjectIdentifier(("analogValue", 100 + i)) for i in range(OBJECTS)]
    batches = []
    for at in range(0, OBJECTS, BATCH):
        params = []
        for oid in ids[at:at + BATCH]:
            params += [oid, props]
        batches.append(params)
    values = 0
    c0, d0, t0 = time.process_time(), cpu_seconds(peer_pid), time.monotonic()
    while time.monotonic() - t0 < SECONDS:
        for params in batches:
            answer = await app.read_property_multiple(target, params, vendor_info=vendor)
            # Two properties an object: its present value and status flags.
            values += len(answer) // 2
    c1, d1, t1 = time.process_time(), cpu_seconds(peer_pid), time.monotonic()
    app.close()
    rate = values / (t1 - t0)
    return (rate, rate), (c1 - c0) / values * 1e6, (d1 - d0) / (t1 - t0) * 100


def gateway_cov(state, peer, device_port):
    metrics = free_port()
    gw = gateway(state, metrics, f"""
[[adapter]]
type = "bacnet"
name = "bms"
bind = "127.0.0.1:0"
poll = "1h"
timeout = "3s"
cov_lifetime = "1h"

[[bacnet.device]]
instance = 9002
address = "127.0.0.1:{device_port}"
id = "cov"
cov = true
""")
    try:
        subs = 'edge_gateway_bacnet_cov_subscriptions{adapter="bms",device="cov"}'
        notes = 'edge_gateway_bacnet_cov_notifications_total{adapter="bms"}'
        until("the subscriptions", lambda: sample(metrics, subs) == 4.0)
        n0, c0, d0, t0 = sample(metrics, notes) or 0, cpu_seconds(gw.pid), cpu_seconds(peer.p.pid), time.monotonic()
        # Four objects changing at once, as fast as bacpypes3 sends.
        for i in range(4):
            peer.p.stdin.write(f"ramp 9002 analogValue:{100 + i} 0 1 {COV_CHANGES // 4} 0\n")
        peer.p.stdin.flush()
        for _ in range(4):
            if peer.p.stdout.readline().strip() != "ok":
                raise SystemExit("ramp failed")
        last, still = -1.0, 0
        while still < 5:
            time.sleep(0.1)
            now = sample(metrics, notes) or 0
            still = still + 1 if now == last else 0
            last = now
        n1, c1, d1, t1 = last, cpu_seconds(gw.pid), cpu_seconds(peer.p.pid), time.monotonic() - 0.5
    finally:
        gw.terminate()
        gw.wait()
    n = n1 - n0
    return n, n / (t1 - t0), (c1 - c0) / n * 1e6, (d1 - d0) / (t1 - t0) * 100


def main():
    import bacpypes3

    polled, moving = free_port(), free_port()
    peer = Peer({"devices": [
        {"instance": 9001, "port": polled, "count": OBJECTS},
        {"instance": 9002, "port": moving, "count": 4},
    ]})
    try:
        with tempfile.TemporaryDirectory() as state:
            ours = gateway_polling(state, polled, peer.p.pid)
            theirs = asyncio.run(bacpypes3_polling(polled, peer.p.pid))
            cov = gateway_cov(state, peer, moving)
    finally:
        peer.stop()
    print(f"{OBJECTS} analog-value objects on one bacpypes3 {bacpypes3.__version__} device on loopback, "
          f"{SECONDS:.0f} s each, {BATCH} objects per ReadPropertyMultiple; gateway {BIN}")
    print(f"{'reader':<22}{'values/s':>10}{'polling only':>14}{'CPU µs/value':>14}{'device CPU %':>14}")
    for name, ((rate, busy), cpu, dev) in [("edge-gateway", ours), ("bacpypes3 client", theirs)]:
        print(f"{name:<22}{rate:>10.0f}{busy:>14.0f}{cpu:>14.1f}{dev:>14.0f}")
    n, rate, cpu, dev = cov
    print(f"COV: {n:.0f} notifications handled, {rate:.0f}/s, {cpu:.1f} µs gateway CPU each, "
          f"device CPU {dev:.0f} % ({COV_CHANGES} changes made)")


main()
