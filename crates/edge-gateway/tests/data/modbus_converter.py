"""A buffering RS-485 converter between the gateway and a Modbus RTU
device, for the gateway's tests: it forwards each request frame to the
device and the device's answer back, the way a misbehaving converter (or
a radio link, or a Modbus gateway with a queue) does when told to.
pyserial only; the device behind it is pymodbus (modbus_peer.py).

argv: GATEWAY_SIDE_PATH DEVICE_SIDE_PATH
Commands on stdin (each answered with "end"):
  normal   forward answers at once (an answer held back goes first)
  behind   hold every answer back until the next request arrives, then
           send it first: each request gets the previous one's answer
  late     hold back only the next answer until the next request, then
           send it and that request's answer back to back
  double   send every answer twice, back to back
  mute     forward requests, drop every answer (a unit gone quiet)
  echo     also send every request back to the gateway before forwarding
           it, as an RS-485 adapter that hears its own transmission does
           (whatever the mode above)
  noecho   stop echoing
  count    print "count N", the requests forwarded so far
Frames are told apart by silence (5 ms), as converters do.
"""
import sys
import threading

import serial

gateway_side, device_side = sys.argv[1], sys.argv[2]
gw = serial.Serial(gateway_side, baudrate=19200, timeout=None)
dev = serial.Serial(device_side, baudrate=19200, timeout=None)
mode = "normal"
echoing = False
late_once = False
lock = threading.Lock()
forwarded = 0


def read_frame(port, first_byte_timeout):
    """Bytes until 5 ms of silence; b"" if nothing came in time."""
    port.timeout = first_byte_timeout
    first = port.read(1)
    if not first:
        return b""
    port.timeout = 0.005
    frame = bytearray(first)
    while True:
        more = port.read(256)
        if not more:
            return bytes(frame)
        frame.extend(more)


def forward():
    global late_once, forwarded
    held = None
    while True:
        request = read_frame(gw, None)
        if not request:
            continue
        with lock:
            echo_now = echoing
        if echo_now:
            # A real adapter echoes each byte as it goes out; here the
            # frame at once: the gateway sees the same bytes, before the
            # answer, either way.
            gw.write(request)
            gw.flush()
        dev.reset_input_buffer()
        dev.write(request)
        answer = read_frame(dev, 1.0)
        with lock:
            forwarded += 1
            now = mode
            once = late_once
            late_once = False
        # What was held back goes out first, as a queue releases it.
        out = held or b""
        held = None
        if now == "mute":
            pass
        elif once or now == "behind":
            held = answer or None
        elif now == "double":
            out += answer + answer
        else:
            out += answer
        if out:
            gw.write(out)
        gw.flush()


threading.Thread(target=forward, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    with lock:
        if words[0] in ("normal", "behind", "double", "mute"):
            mode = words[0]
        elif words[0] in ("echo", "noecho"):
            echoing = words[0] == "echo"
        elif words[0] == "late":
            late_once = True
        elif words[0] == "count":
            print(f"count {forwarded}")
    print("end", flush=True)
