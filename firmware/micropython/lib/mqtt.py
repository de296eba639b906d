# A small MQTT 3.1.1 client for nodes: CONNECT with Last Will and
# persistent sessions, PUBLISH at QoS 0, 1 and 2, PINGREQ, DISCONNECT.
#
# Why not umqtt.simple: it has no QoS 2 and forgets an unacknowledged
# message when the socket drops, so a node that resends after a reconnect
# counts the reading twice whenever the drop fell between the broker's
# receipt and its acknowledgement. Here one message is in flight at a time
# and its state (`pending`) is plain data the node keeps in RTC memory: after
# a drop, or a deep sleep, or a reset, a reconnect with the same client id
# and clean_session=False resumes it exactly as MQTT 3.1.1 section 4.4
# requires (PUBLISH again with DUP, or PUBREL again), and the broker, which
# kept the QoS 2 packet id in the session, delivers it once.
#
# Runs on MicroPython (socket, struct) and CPython.
import socket
import struct

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
PUBREC = 0x50
PUBREL = 0x62  # fixed header flags 0b0010, required
PUBCOMP = 0x70
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

# CONNACK return codes (3.2.2.3), for the error message.
_REFUSED = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MQTTError(OSError):
    """The broker refused or broke the protocol: treated like a lost link."""


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack(">H", len(s)) + s


class MQTTClient:
    """One connection to a broker. `pending` is the message in flight, or
    None: [packet id, phase ("publish" or "pubrel"), topic, payload, qos,
    retain]; save it with the node's state and pass it back after a reset."""

    def __init__(
        self,
        client_id,
        server,
        port=1883,
        keepalive=60,
        clean_session=False,
        will=None,
        user=None,
        password=None,
        timeout_s=5.0,
        pending=None,
        next_pid=1,
    ):
        self.client_id = client_id
        self.server = server
        self.port = port
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.will = will  # (topic, payload, retain, qos)
        self.user = user
        self.password = password
        self.timeout_s = timeout_s
        self.pending = pending
        self.next_pid = next_pid
        self.sock = None

    # --- framing ------------------------------------------------------

    def _send(self, data):
        view = memoryview(data)
        while view:
            n = self.sock.write(view) if hasattr(self.sock, "write") else self.sock.send(view)
            if not n:
                raise OSError("connection closed while sending")
            view = view[n:]

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise OSError("connection closed by the broker")
            out += chunk
        return out

    def _packet(self):
        """(first byte, body) of the next packet."""
        head = self._read(1)[0]
        n, shift = 0, 0
        while True:
            b = self._read(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MQTTError("malformed remaining length")
        return head, self._read(n) if n else b""

    def _expect(self, kind, pid):
        """Reads until the `kind` packet for `pid`. A PINGRESP or a stray
        acknowledgement of an older packet is skipped."""
        while True:
            head, body = self._packet()
            if head & 0xF0 == kind & 0xF0 and len(body) >= 2 and struct.unpack(">H", body[:2])[0] == pid:
                return
            if head & 0xF0 == PUBLISH:
                # A node subscribes to nothing, but a broker may still
                # replay a session's queue: acknowledge and drop it.
                self._ack_incoming(head, body)

    def _ack_incoming(self, head, body):
        qos = (head >> 1) & 0x03
        if qos:
            tlen = struct.unpack(">H", body[:2])[0]
            pid = struct.unpack(">H", body[2 + tlen : 4 + tlen])[0]
            self._send(struct.pack(">BBH", PUBACK if qos == 1 else PUBREC, 2, pid))

    # --- session ------------------------------------------------------

    def connect(self):
        """Opens the connection; returns the broker's session-present flag.
        Resumes `pending` first when the broker kept the session.

        Raises OSError (MQTTError) on any failure; the socket is closed."""
        self.close()
        try:
            addr = socket.getaddrinfo(self.server, self.port)[0][-1]
            self.sock = socket.socket()
            self.sock.settimeout(self.timeout_s)
            self.sock.connect(addr)
            flags = 0x02 if self.clean_session else 0
            payload = _str(self.client_id)
            if self.will:
                topic, msg, retain, qos = self.will
                flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
                payload += _str(topic) + _str(msg)
            if self.user is not None:
                flags |= 0x80
                payload += _str(self.user)
                if self.password is not None:
                    flags |= 0x40
                    payload += _str(self.password)
            var = _str("MQTT") + struct.pack(">BBH", 4, flags, self.keepalive)
            body = var + payload
            self._send(bytes((CONNECT,)) + _varint(len(body)) + body)
            head, ack = self._packet()
            if head != CONNACK or len(ack) != 2:
                raise MQTTError("expected CONNACK, got 0x%02x" % head)
            if ack[1]:
                raise MQTTError("connection refused: %s" % _REFUSED.get(ack[1], ack[1]))
            present = bool(ack[0] & 0x01)
            if self.pending:
                if present:
                    self._resume()
                else:
                    # The broker lost the session (restarted without
                    # persistence): it has no copy in progress. Send the
                    # message again as new, at least once.
                    self.pending[1] = "publish"
                    self.pending[0] = self._pid()
                    self._resume(dup=False)
            return present
        except Exception:
            self.close()
            raise

    def _pid(self):
        pid = self.next_pid
        self.next_pid = pid % 0xFFFF + 1
        return pid

    def publish(self, topic, payload, qos=0, retain=False):
        """Sends one message and, for QoS 1 and 2, waits for its
        acknowledgement. On OSError the message stays in `pending`."""
        if self.pending:
            raise MQTTError("a message is already in flight")
        if qos == 0:
            if isinstance(payload, str):
                payload = payload.encode()
            self._send_publish(topic, payload, 0, retain, 0, False)
            return
        self.stage(topic, payload, qos, retain)
        self.send_pending()

    def stage(self, topic, payload, qos, retain=False):
        """Makes a QoS 1/2 message `pending` without sending it, so that the
        node can save it before the first byte leaves."""
        if self.pending:
            raise MQTTError("a message is already in flight")
        if qos not in (1, 2):
            raise ValueError("stage() is for QoS 1 and 2")
        # Kept as text when it is text: `pending` goes into the node's JSON
        # state, and is encoded when sent.
        self.pending = [self._pid(), "publish", topic, payload, qos, retain]

    def send_pending(self):
        """Sends the staged message and waits for its acknowledgement."""
        if self.pending:
            self._resume(dup=False)

    def _send_publish(self, topic, payload, qos, retain, pid, dup):
        head = PUBLISH | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
        body = _str(topic) + (struct.pack(">H", pid) if qos else b"") + payload
        self._send(bytes((head,)) + _varint(len(body)) + body)

    def _resume(self, dup=True):
        pid, phase, topic, payload, qos, retain = self.pending
        if isinstance(payload, str):
            payload = payload.encode()
        if phase == "publish":
            self._send_publish(topic, payload, qos, retain, pid, dup)
            if qos == 1:
                self._expect(PUBACK, pid)
                self.pending = None
                return
            self._expect(PUBREC, pid)
            # From here the broker owns the message: never PUBLISH it again.
            self.pending[1] = "pubrel"
            self.on_progress()
        self._send(struct.pack(">BBH", PUBREL, 2, pid))
        self._expect(PUBCOMP, pid)
        self.pending = None

    def on_progress(self):
        """Called when `pending` changes phase; the node saves it here so a
        reset between PUBREC and PUBCOMP resumes with PUBREL."""

    def ping(self):
        self._send(bytes((PINGREQ, 0)))
        while True:
            head, _ = self._packet()
            if head == PINGRESP:
                return

    def disconnect(self):
        """A clean DISCONNECT: the broker discards the Last Will."""
        try:
            if self.sock:
                self._send(bytes((DISCONNECT, 0)))
        finally:
            self.close()

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
