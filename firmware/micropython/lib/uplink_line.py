# Readings as CSV lines over TCP to the gateway's `tcp_line` adapter with
# `ack = true` (issue #17's contract):
#
#   every newline-terminated line of a connection has a number, 1, 2, ...;
#   the gateway writes "ok N\n" once every line up to N is durable (or
#   refused), and "err N reason\n" before that for a line it refused.
#
# A line leaves the node's queue only when an "ok" covers it, so a drop, a
# gateway crash or a deep sleep in the middle resends it on the next
# connection (numbered afresh), and the gateway, which journaled it before
# saying ok, has it once. A refused line ("err") is dropped and counted: it
# would be refused again.
import socket

import wire


class LineUplink:
    def __init__(self, host, port=8080, columns=None, timeout_s=5.0, max_line_bytes=4096):
        self.host = host
        self.port = port
        # `ts` first: a line resent after an outage keeps its own time.
        self.columns = columns or ["ts", "temperature", "pressure", "humidity", "gas"]
        self.timeout_s = timeout_s
        self.max_line_bytes = max_line_bytes

    def pending(self, st):
        return False  # nothing is half-sent: unacknowledged lines stay in q

    def line(self, entry):
        t, values = entry
        row = dict(values)
        for key in ("ts", "time", "timestamp"):
            if key in self.columns:
                # Epoch milliseconds: the gateway reads it as the event time.
                row[key] = None if t is None else int(round(t * 1000))
        return wire.csv_line(row, self.columns)

    def flush(self, st, save):
        q = st.get("q", [])
        if not q:
            return
        sock = socket.socket()
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(socket.getaddrinfo(self.host, self.port)[0][-1])
            # Line numbers of this connection -> the queued entry each carries.
            sent = []
            data = bytearray()
            for n, entry in enumerate(q, 1):
                text = self.line(entry).encode()
                if len(text) >= self.max_line_bytes:
                    raise ValueError("line of %d bytes exceeds the gateway's limit" % len(text))
                data += text + b"\n"
                sent.append(entry)
            _send_all(sock, data)
            done = set()  # numbers acknowledged or refused
            acked = 0
            buf = b""
            while acked < len(sent):
                chunk = sock.recv(256)
                if not chunk:
                    raise OSError("gateway closed the connection after ok %d of %d" % (acked, len(sent)))
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    word, _, rest = raw.decode().strip().partition(" ")
                    num, _, reason = rest.partition(" ")
                    try:
                        n = int(num)
                    except ValueError:
                        raise OSError("unexpected answer %r" % raw)
                    if not 1 <= n <= len(sent):
                        raise OSError("answer for line %d, %d sent" % (n, len(sent)))
                    if word == "ok":
                        acked = max(acked, n)
                    elif word == "err":
                        st["refused"] = st.get("refused", 0) + 1
                        print("gateway refused line %d: %s" % (n, reason))
                        done.add(n)
                    else:
                        raise OSError("unexpected answer %r" % raw)
                # Acknowledged lines leave the queue at once, and the state is
                # saved, so a drop after this resends only the rest.
                gone = [e for i, e in enumerate(sent, 1) if i <= acked or i in done]
                if gone:
                    ids = [id(e) for e in gone]
                    q[:] = [e for e in q if id(e) not in ids]
                    save()
        finally:
            sock.close()


def _send_all(sock, data):
    view = memoryview(data)
    while view:
        n = sock.send(view)
        if not n:
            raise OSError("connection closed while sending")
        view = view[n:]
