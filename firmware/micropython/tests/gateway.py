"""The real edge-gateway binary and an upstream observer (mosquitto_sub),
for the end-to-end tests."""
import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

import support


class Gateway:
    """`edge-gateway run -c <generated toml>`, its log lines readable."""

    def __init__(self, config):
        self.dir = tempfile.TemporaryDirectory(prefix="fw-gateway-")
        self.config_path = os.path.join(self.dir.name, "gateway.toml")
        with open(self.config_path, "w") as f:
            f.write(config.replace("@STATE_DIR@", os.path.join(self.dir.name, "state")))
        self.proc = subprocess.Popen(
            [support.gateway_binary(), "run", "-c", self.config_path],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, RUST_LOG="info", NO_COLOR="1"),
        )
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_log(self, needle, timeout=support.WAIT_S):
        if any(needle in line for line in self.seen):
            return
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.0, left))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError("no log line with %r; log:\n%s" % (needle, "\n".join(self.seen)))
            self.seen.append(line)
            if needle in line:
                return

    def stop(self, timeout=support.WAIT_S):
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.close()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.dir.cleanup()


def metric_value(port, name):
    """A sample of the gateway's /metrics (the exact series name with its
    labels), or None."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return None


def wait_metric(port, name, want, timeout=support.WAIT_S):
    """Blocks until the series reaches `want` (bounded)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = metric_value(port, name)
        except OSError:
            last = None
        if last is not None and last >= want:
            return last
        support.select_pause(0.05)
    raise AssertionError("%s stayed at %r, expected %r" % (name, last, want))


class Subscriber:
    """mosquitto_sub on a topic filter, printing topic and payload per line."""

    count = 0

    def __init__(self, port, topic):
        Subscriber.count += 1
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-v", "-q", "1", "-i",
             "fw-test-sub-%d-%d" % (os.getpid(), Subscriber.count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.messages = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            topic, _, payload = line.rstrip("\n").partition(" ")
            self.messages.put((topic, payload))

    def collect(self, until, timeout=support.WAIT_S):
        """Messages until until(list) is true (bounded)."""
        got = []
        deadline = time.monotonic() + timeout
        while not until(got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out; got %d messages: %r" % (len(got), got[-5:]))
            try:
                got.append(self.messages.get(timeout=left))
            except queue.Empty:
                pass
        return got

    def drain(self):
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def publish(port, topic, payload, qos=1, retain=False):
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-m", payload, "-q", str(qos)]
        + (["-r"] if retain else []),
        check=True,
        timeout=support.WAIT_S,
    )


def config(gateway_id, broker_port, metrics_port):
    """Local adapter and upstream on the same test broker; one-hour windows
    forwarded (partial) at SIGTERM, so the test counts every reading; a
    node's clock that moved ahead by its simulated sleeps is accepted."""
    return """
[gateway]
id = "{gid}"
site = "hq"
state_dir = "@STATE_DIR@"

[upstream]
url = "mqtt://127.0.0.1:{port}"
qos = 1
topic_prefix = "building/{{site}}"
max_backoff = "1s"

[aggregation]
window = "1h"
grace = "1h"
max_future = "6h"
checkpoint_interval = "0s"

[metrics]
enabled = true
bind = "127.0.0.1:{metrics}"

[[adapter]]
type = "mqtt"
name = "local-sensors"
url = "mqtt://127.0.0.1:{port}"
topics = ["sensors/data/{{device}}/{{metric}}", "sensors/{{device}}"]
status_topics = ["sensors/status/{{device}}"]
client_id = "{gid}-local"
max_backoff = "1s"
""".format(gid=gateway_id, port=broker_port, metrics=metrics_port)


def shipped_config(gateway_id, broker_port, metrics_port):
    """The gateway.toml the project ships (the default config), with only
    what a test must change: the broker's port, the state directory, the
    metrics port, and the aggregation timing (one-hour windows forwarded at
    SIGTERM; a node clock ahead by its simulated sleeps). Adapters and topics
    stay as shipped: a node that works here works with the default config.
    Every replacement must apply, so a change of the template fails here."""
    with open(os.path.join(support.REPO, "gateway.toml")) as f:
        text = f.read()
    for old, new in [
        ('id = "gw-01"', 'id = "%s"' % gateway_id),
        ('state_dir = "/var/lib/edge-gateway"', 'state_dir = "@STATE_DIR@"'),
        ('url = "mqtt://127.0.0.1:1883"', 'url = "mqtt://127.0.0.1:%d"' % broker_port),
        ('window = "5m"', 'window = "1h"'),
        ('grace = "30s"', 'grace = "1h"'),
        ('max_future = "1m"', 'max_future = "6h"'),
        ('checkpoint_interval = "5s"', 'checkpoint_interval = "0s"'),
        ('bind = "127.0.0.1:9898"', 'bind = "127.0.0.1:%d"' % metrics_port),
        ('max_backoff = "30s"', 'max_backoff = "1s"'),
    ]:
        if old not in text:
            raise AssertionError("gateway.toml no longer has %r" % old)
        text = text.replace(old, new)
    return text


def aggregates(messages, device):
    topic = "building/hq/%s/aggregated" % device
    return [json.loads(p) for t, p in messages if t == topic]
