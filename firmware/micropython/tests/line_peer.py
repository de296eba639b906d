"""Peers for the TCP line tests.

`FakeLineGateway`: a socket server that speaks issue #17's `tcp_line`
acknowledgement contract (lines numbered per connection from 1; "ok N"
once lines up to N are journaled; "err N reason" for a refused line; a
partial line at a disconnect is discarded). It stands in for the gateway's
adapter in the node-side tests; the real one is used by test_line.py's
NodeLoopAgainstTheGateway.

`LineProxy`: a TCP proxy to a line peer that can cut a connection in the
middle of a line, after the peer acknowledged every complete line before
it, so the outcome is exact: nothing lost, nothing doubled.
"""
import socket
import threading


class FakeLineGateway:
    def __init__(self, columns):
        self.columns = columns
        self.journal = []  # lines accepted, in order
        self.refused = []
        self.connections = 0
        # Per connection: close after this many lines without acknowledging
        # them (the gateway crashed before they were durable).
        self.crash_after = None
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        n = 0
        buf = b""
        crash_after, self.crash_after = self.crash_after, None
        with conn:
            while True:
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    return
                if not chunk:
                    return  # a partial line in buf is discarded
                buf += chunk
                out = b""
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    n += 1
                    if crash_after is not None and n > crash_after:
                        # What was durable was acknowledged; the rest dies.
                        try:
                            conn.sendall(out)
                        except OSError:
                            pass
                        return
                    fields = raw.decode().strip().split(",")
                    with self.lock:
                        if len(fields) != len(self.columns):
                            self.refused.append(raw)
                            out += b"err %d csv_column_count\n" % n
                        else:
                            self.journal.append(raw.decode())
                    out += b"ok %d\n" % n
                try:
                    conn.sendall(out)
                except OSError:
                    return

    def close(self):
        self.sock.close()


class LineProxy:
    def __init__(self, port):
        self.port_upstream = port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.cut_at = None  # cut inside the k-th line of the next connection
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.port_upstream), timeout=10)
            cut, self.cut_at = self.cut_at, None
            acked = {"n": 0, "cv": threading.Condition()}
            threading.Thread(target=self._down, args=(up, client, acked), daemon=True).start()
            threading.Thread(target=self._up, args=(client, up, cut, acked), daemon=True).start()

    def _down(self, up, client, acked):
        buf = b""
        try:
            while True:
                chunk = up.recv(4096)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    # Forwarded before it counts: the cut waits for the node
                    # to have every earlier "ok".
                    client.sendall(raw + b"\n")
                    word, _, rest = raw.decode().partition(" ")
                    if word == "ok":
                        with acked["cv"]:
                            acked["n"] = max(acked["n"], int(rest.split()[0]))
                            acked["cv"].notify_all()
        except OSError:
            pass
        finally:
            client.close()

    def _up(self, client, up, cut, acked):
        buf = b""
        sent = 0
        try:
            while True:
                chunk = client.recv(4096)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    if cut is not None and sent + 1 == cut:
                        # Every earlier line acknowledged first (bounded
                        # wait), then half of this one, then the cut.
                        with acked["cv"]:
                            acked["cv"].wait_for(lambda: acked["n"] >= sent, timeout=20)
                        up.sendall(raw[: len(raw) // 2])
                        self.cuts += 1
                        for s in (client, up):
                            try:
                                s.shutdown(socket.SHUT_RDWR)
                            except OSError:
                                pass
                            s.close()
                        return
                    up.sendall(raw + b"\n")
                    sent += 1
        except OSError:
            pass
        finally:
            up.close()

    def close(self):
        self.sock.close()
