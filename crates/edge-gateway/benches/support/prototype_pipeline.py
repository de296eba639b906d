"""A hand-built Python pipeline: paho-mqtt subscriber that aggregates
readings per device and metric in tumbling windows and publishes each
closed window, the way a first prototype of the gateway would. The
harness measures how many readings per second it takes in.

usage: prototype_pipeline.py PORT EXPECTED WINDOW_S [QOS]
Prints "received FIRST_TS LAST_TS COUNT" (monotonic seconds) when EXPECTED
readings arrived or nothing arrived for 3 s.
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

port, expected, window_s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
stats = {}  # (device, metric) -> [count, sum, min, max]
state = {"first": None, "last": None, "n": 0, "window_end": None}
done = threading.Event()


def flush(client):
    for (device, metric), (n, s, lo, hi) in stats.items():
        client.publish(
            f"cloud/{device}/aggregated",
            json.dumps({"device": device, "metric": metric, "count": n,
                        "avg": s / n, "min": lo, "max": hi}),
            qos=1,
        )
    stats.clear()


def on_message(client, _userdata, msg):
    now = time.monotonic()
    if state["first"] is None:
        state["first"] = now
        state["window_end"] = now + window_s
    if now >= state["window_end"]:
        flush(client)
        state["window_end"] = now + window_s
    _, _, device, metric = msg.topic.split("/", 3)
    try:
        if msg.payload[:1] == b"{":
            values = json.loads(msg.payload).items()
        else:
            values = [(metric, float(msg.payload))]
    except ValueError:
        return
    for metric, v in values:
        e = stats.get((device, metric))
        if e is None:
            stats[(device, metric)] = [1, v, v, v]
        else:
            e[0] += 1
            e[1] += v
            e[2] = min(e[2], v)
            e[3] = max(e[3], v)
    state["last"] = now
    state["n"] += 1
    if state["n"] >= expected:
        done.set()


def on_connect(client, *_args):
    client.subscribe("sensors/data/+/+", qos=QOS)


def on_subscribe(*_args):
    print("ready", flush=True)


QOS = int(sys.argv[4]) if len(sys.argv) > 4 else 0
try:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="prototype-pipeline")
except AttributeError:  # paho-mqtt 1.x
    client = mqtt.Client(client_id="prototype-pipeline")
client.on_connect = on_connect
client.on_message = on_message
client.on_subscribe = on_subscribe
client.connect("127.0.0.1", port)
client.loop_start()
seen = -1
while not done.wait(3.0):
    if state["n"] == seen and seen > 0:
        break
    seen = state["n"]
flush(client)
client.loop_stop()
print(f"received {state['first'] or 0} {state['last'] or 0} {state['n']}", flush=True)
