"""Does a command flood delay readings? Measures, on the real binary, the
latency of a reading (mosquitto_pub on the building broker -> the mqtt
adapter's received counter on /metrics) with and without a flood of
commands on the cloud broker, stamped with their time (beyond the burst
each is refused by rate without a journal line, and its result stored
in the outbox and sent on the results' lane).

  python3 bench/command-flood/flood.py target/release/edge-gateway

Prints the median and 95th percentile latency of 40 readings, idle and
during a flood of 20 000 commands.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BIN = sys.argv[1]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def broker(dir, port):
    conf = os.path.join(dir, f"m{port}.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n")
    p = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return p
        except OSError:
            time.sleep(0.05)
    raise SystemExit("mosquitto did not start")


def received(metrics):
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics").read().decode()
    for line in body.splitlines():
        if line.startswith('edge_gateway_adapter_received_messages_total{adapter="zigbee"}'):
            return float(line.split()[-1])
    return 0.0


def latencies(building, metrics, n=40):
    out = []
    for i in range(n):
        before = received(metrics)
        t0 = time.monotonic()
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(building), "-q", "1",
                        "-t", "zigbee2mqtt/sensor-1", "-m", json.dumps({"temperature": 20 + i % 5})], check=True)
        while received(metrics) <= before:
            if time.monotonic() - t0 > 10:
                raise SystemExit("a reading did not arrive in 10 s")
            time.sleep(0.001)
        out.append((time.monotonic() - t0) * 1000)
    return out


def report(name, xs):
    xs = sorted(xs)
    print(f"{name}: median {statistics.median(xs):.1f} ms, p95 {xs[int(len(xs) * 0.95) - 1]:.1f} ms, max {xs[-1]:.1f} ms")


with tempfile.TemporaryDirectory() as dir:
    cloud, building, metrics = free_port(), free_port(), free_port()
    brokers = [broker(dir, cloud), broker(dir, building)]
    conf = os.path.join(dir, "gateway.toml")
    with open(conf, "w") as f:
        f.write(f"""
[gateway]
id = "gw-flood"
site = "hq"
state_dir = "{dir}/state"
[upstream]
url = "mqtt://127.0.0.1:{cloud}"
topic_prefix = "building/{{site}}"
[metrics]
bind = "127.0.0.1:{metrics}"
[commands]
enabled = true
[[adapter]]
type = "mqtt"
name = "zigbee"
url = "mqtt://127.0.0.1:{building}"
topics = ["zigbee2mqtt/{{device}}"]
command_topic = "zigbee2mqtt/{{device}}/set"
[[device]]
id = "lamp-1"
name = "Lamp"
writable = ["state"]
""")
    gw = subprocess.Popen([BIN, "run", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                if "edge_gateway_commands_subscribed 1" in urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics").read().decode():
                    break
            except OSError:
                pass
            time.sleep(0.05)
        report("idle", latencies(building, metrics))
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = "\n".join(json.dumps({"id": f"f-{i}", "metric": "state", "value": "ON", "ts": ts}) for i in range(20000)) + "\n"
        flood = subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(cloud), "-q", "1",
                                  "-t", "building/hq/lamp-1/command", "-l"], stdin=subprocess.PIPE)
        threading.Thread(target=lambda: (flood.stdin.write(lines.encode()), flood.stdin.close()), daemon=True).start()
        time.sleep(0.5)
        report("during a flood of 20000 commands", latencies(building, metrics))
        flood.wait()
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics").read().decode()
        print("\n".join(l for l in body.splitlines() if l.startswith("edge_gateway_commands_total")))
    finally:
        gw.terminate()
        gw.wait()
        for b in brokers:
            b.terminate()
