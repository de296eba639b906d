"""A TCP proxy between a node and the real Mosquitto that breaks the link
at the worst moments, on command.

It reads MQTT packet boundaries (fixed header + remaining length) in both
directions and forwards whole packets. `cut_after(kind, n)`: the n-th packet
of `kind` from the node is forwarded to the broker, then the broker's answer
is swallowed and both sockets are closed, so the broker has the message and
the node never learns it. That is where a naive resend counts a reading
twice. `refuse()`: new connections are closed at once (broker unreachable)
until `accept()`.
"""
import socket
import threading


def _read_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise OSError("closed")
        out += chunk
    return out


def read_packet(sock):
    head = _read_exact(sock, 1)
    raw, n, shift = b"", 0, 0
    while True:
        b = _read_exact(sock, 1)
        raw += b
        n |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            break
        shift += 7
    return head + raw + (_read_exact(sock, n) if n else b"")


KINDS = {"publish": 0x30, "pubrel": 0x60}


class Proxy:
    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.refusing = False
        self.cut = None  # (kind, remaining count)
        self.cuts_done = threading.Event()
        self.counts = {"publish": 0, "pubrel": 0, "connections": 0, "refused": 0}
        self.pairs = []
        # Set by a test: called for the first connection accepted after a
        # cut, before it reaches the broker, and returns once the broker has
        # noticed the cut link (it published the Last Will). A node that
        # reconnects at once can otherwise win the race with the broker's
        # read of the closed socket, and Mosquitto sends no Will for a
        # session taken over.
        self.before_reconnect = None
        self.after_cut = False
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def cut_after(self, kind, n):
        """Break the link after the n-th `kind` packet from now on."""
        with self.lock:
            self.cut = [kind, n]
            self.cuts_done.clear()

    def refuse(self):
        with self.lock:
            self.refusing = True

    def accept(self):
        with self.lock:
            self.refusing = False

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                refusing = self.refusing
                self.counts["refused" if refusing else "connections"] += 1
            if refusing:
                client.close()
                continue
            with self.lock:
                wait = self.before_reconnect if self.after_cut else None
                self.after_cut = False
            if wait:
                try:
                    wait()
                except AssertionError as e:
                    # The test's own assertion on the Will reports it.
                    print("proxy: %s" % e)
            try:
                broker = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            broker.settimeout(None)
            pair = {"client": client, "broker": broker, "blackhole": False, "dead": False}
            self.pairs.append(pair)
            threading.Thread(target=self._up, args=(pair,), daemon=True).start()
            threading.Thread(target=self._down, args=(pair,), daemon=True).start()

    def _kill(self, pair):
        pair["dead"] = True
        for s in (pair["client"], pair["broker"]):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _up(self, pair):
        """Node -> broker."""
        try:
            while True:
                pkt = read_packet(pair["client"])
                trigger = False
                with self.lock:
                    for kind, code in KINDS.items():
                        if pkt[0] & 0xF0 == code:
                            self.counts[kind] += 1
                            if self.cut and self.cut[0] == kind:
                                self.cut[1] -= 1
                                if self.cut[1] == 0:
                                    trigger = True
                                    self.cut = None
                if trigger:
                    # Nothing more reaches the node; the broker's answer to
                    # this packet closes both sides (see _down), which proves
                    # the broker processed it first. The node's side stays
                    # open until then: a node told at once reconnects at
                    # once (its backoff runs on the test's clock), and the
                    # broker may take its session over and drop this link
                    # before it reads the packet.
                    pair["blackhole"] = True
                pair["broker"].sendall(pkt)
                if trigger:
                    return
        except OSError:
            if not pair["blackhole"]:
                self._kill(pair)

    def _down(self, pair):
        """Broker -> node."""
        try:
            while True:
                pkt = read_packet(pair["broker"])
                if pair["blackhole"]:
                    with self.lock:
                        self.after_cut = True
                    self._kill(pair)
                    self.cuts_done.set()
                    return
                pair["client"].sendall(pkt)
        except OSError:
            self._kill(pair)

    def close(self):
        self.closed = True
        self.listener.close()
        for pair in self.pairs:
            if not pair["dead"]:
                self._kill(pair)
