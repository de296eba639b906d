"""How many KNX group telegrams per second, and how much CPU per telegram,
the knx adapter takes (the whole gateway: adapter, pipeline, windows,
dashboard), beside xknx's own client receiving the same telegrams in the
same run.

A sender (this script, raw sockets: pre-encoded ROUTING_INDICATION
frames, GroupValueWrite of 1.001, 5.001, 9.001, 13.013 and 14.056 values
to 200 group addresses) multicasts on loopback at a fixed rate; the
gateway (a `multicast://` knx adapter with those 200 groups) and xknx (a
routing client decoding each value with its DPT transcoder, as the
gateway does) both receive every datagram. Each receiver's CPU is read
from /proc before and after; telegrams per CPU-second is the figure the
issue's goal (5x xknx) is about.

  bash scripts/peers-venv.sh
  target/peers-venv/bin/python bench/knx/bench.py target/release/edge-gateway [RATE] [SECONDS]
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = sys.argv[1]
RATE = float(sys.argv[2]) if len(sys.argv) > 2 else 5000.0
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
TICK = os.sysconf("SC_CLK_TCK")
GROUP = "224.0.23.12"
DPTS = [("1.001", "switch"), ("5.001", "valve"), ("9.001", "temperature"), ("13.013", "energy"), ("14.056", "power")]
ADDRESSES = 200

RECEIVER = r'''
import asyncio, os, sys, json
from xknx import XKNX
from xknx.dpt import DPTBase
from xknx.io import ConnectionConfig, ConnectionType
from xknx.telegram.apci import GroupValueWrite
port = int(sys.argv[1]); types = json.loads(sys.argv[2])
transcoders = {ga: DPTBase.parse_transcoder(d) for ga, d in types.items()}
count = 0
values = 0
def received(t):
    global count, values
    count += 1
    if isinstance(t.payload, GroupValueWrite):
        tc = transcoders.get(str(t.destination_address))
        if tc is not None:
            tc.from_knx(t.payload.value)
            values += 1
async def main():
    x = XKNX(connection_config=ConnectionConfig(connection_type=ConnectionType.ROUTING, local_ip="127.0.0.1",
             multicast_group="224.0.23.12", multicast_port=port), telegram_received_cb=received)
    await x.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        print(json.dumps({"count": count, "values": values}), flush=True)
    await x.stop()
asyncio.run(main())
'''


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metric(port, name):
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


def ga(i):
    # 10/0/0 ... spread over middle groups: 3-level main 10.
    return (10 << 11) | i


def ga_text(i):
    a = ga(i)
    return f"{a >> 11}/{(a >> 8) & 7}/{a & 0xFF}"


def payload(dpt, n):
    if dpt == "1.001":
        return None, n & 1
    if dpt == "5.001":
        return bytes([n % 256]), None
    if dpt == "9.001":
        return bytes([0x0C, n % 256]), None
    if dpt == "13.013":
        return struct.pack(">i", n), None
    return struct.pack(">f", n * 0.5), None


def frame(i, n):
    dpt = DPTS[i % len(DPTS)][0]
    data, small = payload(dpt, n)
    if data is None:
        tpdu = bytes([0x00, 0x80 | small])
    else:
        tpdu = bytes([0x00, 0x80]) + data
    cemi = bytes([0x29, 0x00, 0xBC, 0xE0, 0x11, 0x05]) + struct.pack(">H", ga(i)) + bytes([len(tpdu) - 1]) + tpdu
    return bytes([0x06, 0x10, 0x05, 0x30]) + struct.pack(">H", 6 + len(cemi)) + cemi


def main():
    port = free_port()
    metrics, dashboard = free_port(), free_port()
    types = {ga_text(i): DPTS[i % len(DPTS)][0] for i in range(ADDRESSES)}
    groups = "".join(
        f'\n[[knx.group]]\naddress = "{ga_text(i)}"\ndpt = "{DPTS[i % len(DPTS)][0]}"\n'
        f'device = "room-{i // len(DPTS)}"\nmetric = "{DPTS[i % len(DPTS)][1]}"\n'
        for i in range(ADDRESSES)
    )
    state = tempfile.mkdtemp()
    config = f'''
[gateway]
id = "bench-knx"
state_dir = "{state}/state"

[aggregation]
window = "10s"
grace = "0s"

[metrics]
bind = "127.0.0.1:{metrics}"

[dashboard]
enabled = true
bind = "127.0.0.1:{dashboard}"

[[adapter]]
type = "knx"
name = "router"
url = "multicast://{GROUP}:{port}"
interface = "127.0.0.1"
{groups}
'''
    path = os.path.join(state, "gateway.toml")
    with open(path, "w") as f:
        f.write(config)
    gw = subprocess.Popen([BIN, "run", "-c", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env={**os.environ, "RUST_LOG": "warn"})
    xk = subprocess.Popen([sys.executable, "-u", "-c", RECEIVER, str(port), json.dumps(types)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert xk.stdout.readline().strip() == "ready"
        until("the gateway", lambda: metric(metrics, 'edge_gateway_adapter_connected{adapter="router"}') == 1.0)
        frames = [frame(i, n) for n in range(50) for i in range(ADDRESSES)]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        gw_cpu0, xk_cpu0 = cpu_seconds(gw.pid), cpu_seconds(xk.pid)
        gw_n0 = metric(metrics, 'edge_gateway_adapter_received_messages_total{adapter="router"}') or 0.0
        sent = 0
        start = time.monotonic()
        total = int(RATE * SECONDS)
        while sent < total:
            due = start + sent / RATE
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            # A few at a time: the sender's own pace stays close to RATE.
            for _ in range(min(20, total - sent)):
                s.sendto(frames[sent % len(frames)], (GROUP, port))
                sent += 1
        elapsed = time.monotonic() - start

        def settled(read):
            last = [None]

            def check():
                v = read()
                done = v is not None and v == last[0]
                last[0] = v
                return done
            return check
        until("the gateway to settle", settled(lambda: metric(metrics, 'edge_gateway_adapter_received_messages_total{adapter="router"}')), 120)

        def xk_count():
            xk.stdin.write("\n")
            xk.stdin.flush()
            return json.loads(xk.stdout.readline())["count"]
        until("xknx to settle", settled(xk_count), 300)
        gw_n = metric(metrics, 'edge_gateway_adapter_received_messages_total{adapter="router"}') - gw_n0
        gw_readings = metric(metrics, 'edge_gateway_adapter_readings_total{adapter="router"}')
        xk.stdin.write("\n")
        xk.stdin.flush()
        xk_stats = json.loads(xk.stdout.readline())
        gw_cpu, xk_cpu = cpu_seconds(gw.pid) - gw_cpu0, cpu_seconds(xk.pid) - xk_cpu0
        print(f"sent {sent} telegrams in {elapsed:.1f} s ({sent / elapsed:.0f}/s) to {ADDRESSES} group addresses")
        for name, n, cpu in [("gateway (whole process)", gw_n, gw_cpu), ("xknx routing client", xk_stats["count"], xk_cpu)]:
            per = n / cpu if cpu > 0 else float("inf")
            print(f"{name:26s} received {n:8.0f} ({n / sent:6.1%})  cpu {cpu:6.2f} s  "
                  f"{per:9.0f} telegrams/cpu-s  {1e6 * cpu / max(n, 1):7.1f} us/telegram")
        print(f"gateway readings: {gw_readings:.0f}; xknx values decoded: {xk_stats['values']}")
        xk_per = xk_stats["count"] / xk_cpu if xk_cpu > 0 else float("inf")
        gw_per = gw_n / gw_cpu if gw_cpu > 0 else float("inf")
        print(f"gateway / xknx, telegrams per CPU-second: {gw_per / xk_per:.1f}x (goal: 5x)")
    finally:
        gw.terminate()
        xk.terminate()
        gw.wait()
        xk.wait()


main()
