# What the nodes send, byte for byte as the gateway decodes it.
#
# Binary LoRaWAN payloads (the gateway's `codec = ...` and
# `edge-gateway decode --codec ...`):
#   compact_i16(t, h, battery_v)         5 bytes >hBH
#   bitpacked(t, h, battery_pct)         3 bytes
#   batch(base_ts, [(delta, v)])         5 + 6 n bytes
#   cayenne_lpp([(channel, type, v)])    Cayenne LPP
# BLE: bthome_v2(objects) service data, bthome_advertisement(...) whole AD.
# Text payloads for MQTT topics and TCP/serial lines: csv_line, json_object,
# senml_pack.
#
# Shared rules (the same in firmware/codec, the Rust crate):
# - values are scaled to the field's resolution and rounded half away from
#   zero; int(21.3 * 10) would give 212 (21.3 * 10 == 212.99999999999997);
# - a value that does not fit its field, or is NaN/infinite, raises
#   ValueError naming the field: clamping would send a plausible lie.
# Text forms skip a missing (None) or non-finite value instead: the gateway
# keeps the other fields of the line, so one broken channel costs one value.
#
# Runs on MicroPython (ESP32, RP2040) and CPython: struct and json only.
import json
import struct

_INF = float("inf")


def _finite(v):
    return v == v and v != _INF and v != -_INF


def _scale(value, per_unit, lo, hi, field):
    """value * per_unit rounded half away from zero, within lo..hi."""
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, (int, float)) or not _finite(value):
        raise ValueError("%s is not a finite number: %r" % (field, value))
    x = value * per_unit
    # int() truncates toward zero, so +-0.5 first rounds half away from zero.
    r = int(x + 0.5) if x >= 0 else int(x - 0.5)
    if r < lo or r > hi:
        raise ValueError("%s out of range: %r" % (field, value))
    return r


# --- compact_i16 / bitpacked / batch ---------------------------------------

COMPACT_LEN = 5  # >hBH
BITPACKED_LEN = 3
BATCH_HEADER_LEN = 5  # count u8, base time u32 (epoch s)
BATCH_READING_LEN = 6  # delta u16 (s), value x10 i32
BATCH_MAX_READINGS = 255


def compact_i16(temperature, humidity, battery):
    """Temperature (0.1 C, i16), humidity (1 %, u8), battery (0.01 V, u16)."""
    return struct.pack(
        ">hBH",
        _scale(temperature, 10, -32768, 32767, "temperature"),
        _scale(humidity, 1, 0, 255, "humidity"),
        _scale(battery, 100, 0, 65535, "battery"),
    )


def bitpacked(temperature, humidity, battery_pct):
    """byte0 = (t + 20) * 2 (0.5 C steps, -20..107.5 C); byte1 = humidity
    (7 bits) << 1 | battery bit 6; byte2 = battery bits 0-5 << 2."""
    if isinstance(temperature, (int, float)) and _finite(temperature):
        temperature = temperature + 20
    t = _scale(temperature, 2, 0, 255, "temperature")
    h = _scale(humidity, 1, 0, 127, "humidity")
    b = _scale(battery_pct, 1, 0, 127, "battery")
    return bytes((t, (h << 1) | (b >> 6), (b & 0x3F) << 2))


def batch(base_ts, readings):
    """One metric's readings as [(seconds after base_ts, value), ...]; the
    gateway reads each as `value` at base_ts + delta, 0.1 resolution."""
    if len(readings) > BATCH_MAX_READINGS:
        raise ValueError("at most %d readings per batch" % BATCH_MAX_READINGS)
    base = _scale(base_ts, 1, 0, 0xFFFFFFFF, "base time")
    out = bytearray(struct.pack(">BI", len(readings), base))
    for delta, value in readings:
        out += struct.pack(
            ">Hi",
            _scale(delta, 1, 0, 0xFFFF, "delta"),
            _scale(value, 10, -0x80000000, 0x7FFFFFFF, "value"),
        )
    return bytes(out)


def batch_capacity(max_payload):
    """Readings that fit a payload of max_payload bytes (51 at EU868 DR0)."""
    return max(0, min(BATCH_MAX_READINGS, (max_payload - BATCH_HEADER_LEN) // BATCH_READING_LEN))


# --- Cayenne LPP ------------------------------------------------------------

# name: (type byte, bytes per component, signed, units per LSB inverted,
# components). The gateway's table: myDevices plus ElectronicCats' extended
# types; it names values <name>_<channel>[_<part>].
LPP_TYPES = {
    "digital_in": (0x00, 1, False, 1, 1),
    "digital_out": (0x01, 1, False, 1, 1),
    "analog_in": (0x02, 2, True, 100, 1),  # 0.01 signed
    "analog_out": (0x03, 2, True, 100, 1),  # 0.01 signed
    "generic_sensor": (0x64, 4, False, 1, 1),
    "luminosity": (0x65, 2, False, 1, 1),  # 1 lux
    "presence": (0x66, 1, False, 1, 1),
    "temperature": (0x67, 2, True, 10, 1),  # 0.1 C signed
    "relative_humidity": (0x68, 1, False, 2, 1),  # 0.5 %
    "accelerometer": (0x71, 2, True, 1000, 3),  # 0.001 G signed
    "barometric_pressure": (0x73, 2, False, 10, 1),  # 0.1 hPa
    "voltage": (0x74, 2, False, 100, 1),  # 0.01 V
    "current": (0x75, 2, False, 1000, 1),  # 0.001 A
    "frequency": (0x76, 4, False, 1, 1),  # 1 Hz
    "percentage": (0x78, 1, False, 1, 1),  # 1 %
    "altitude": (0x79, 2, True, 1, 1),  # 1 m signed
    "power": (0x80, 2, False, 1, 1),  # 1 W
    "distance": (0x82, 4, False, 1000, 1),  # 0.001 m
    "energy": (0x83, 4, False, 1000, 1),  # 0.001 kWh
    "direction": (0x84, 2, False, 1, 1),  # 1 degree
    "unix_time": (0x85, 4, False, 1, 1),  # 1 s
    "gyrometer": (0x86, 2, True, 100, 3),  # 0.01 deg/s signed
    "gps": (0x88, 3, True, 10000, 3),  # lat/lon 0.0001 deg, alt 0.01 m
    "switch": (0x8E, 1, False, 1, 1),
    "concentration": (0x8F, 2, False, 1, 1),  # 1 ppm
    "colour": (0x90, 1, False, 1, 3),
}
_GPS_ALTITUDE_PER_UNIT = 100  # 0.01 m


def _be(raw, width):
    # Two's complement, big-endian, `width` bytes.
    raw &= (1 << (8 * width)) - 1
    return bytes((raw >> (8 * (width - 1 - i))) & 0xFF for i in range(width))


def cayenne_lpp(channels):
    """channels: [(channel, type name, value or (x, y, z)), ...] in order."""
    out = bytearray()
    for channel, name, value in channels:
        if name not in LPP_TYPES:
            raise ValueError("unknown Cayenne LPP type %r" % (name,))
        type_id, width, signed, per_unit, parts = LPP_TYPES[name]
        values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        if len(values) != parts:
            raise ValueError("%s takes %d values, got %d" % (name, parts, len(values)))
        if not 0 <= channel <= 255:
            raise ValueError("channel out of range: %r" % (channel,))
        bits = 8 * width
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        item = bytearray((channel, type_id))
        for i, v in enumerate(values):
            scale = _GPS_ALTITUDE_PER_UNIT if name == "gps" and i == 2 else per_unit
            item += _be(_scale(v, scale, lo, hi, name), width)
        out += item
    return bytes(out)


# --- BTHome v2 (BLE) --------------------------------------------------------

BTHOME_UUID = 0xFCD2
# Device information byte: version 2 in bits 5-7; bit 2 = trigger based
# (a sleepy device that advertises only on events), bit 0 = encrypted.
BTHOME_V2 = 0x40
BTHOME_TRIGGER = 0x04
# name: (object id, bytes, signed, units per LSB inverted), bthome.io table.
BTHOME_OBJECTS = {
    "packet_id": (0x00, 1, False, 1),
    "battery": (0x01, 1, False, 1),  # %
    "temperature": (0x02, 2, True, 100),  # 0.01 C
    "humidity": (0x03, 2, False, 100),  # 0.01 %
    "pressure": (0x04, 3, False, 100),  # 0.01 hPa
    "illuminance": (0x05, 3, False, 100),  # 0.01 lux
    "voltage": (0x0C, 2, False, 1000),  # 0.001 V
    "co2": (0x12, 2, False, 1),  # ppm
    "window": (0x2D, 1, False, 1),  # binary: 1 open
    "humidity_coarse": (0x2E, 1, False, 1),  # 1 %
    "temperature_coarse": (0x57, 1, True, 1),  # 1 C, sint8
}


def bthome_v2(objects, trigger=False):
    """Service data after the UUID: info byte, then (object id, little-endian
    value) in the order given; bthome.io asks for ascending ids."""
    out = bytearray((BTHOME_V2 | (BTHOME_TRIGGER if trigger else 0),))
    for name, value in objects:
        if name not in BTHOME_OBJECTS:
            raise ValueError("unknown BTHome object %r" % (name,))
        oid, width, signed, per_unit = BTHOME_OBJECTS[name]
        bits = 8 * width
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        raw = _scale(value, per_unit, lo, hi, name) & ((1 << bits) - 1)
        out.append(oid)
        out += bytes((raw >> (8 * i)) & 0xFF for i in range(width))
    return bytes(out)


def bthome_advertisement(objects, name=None, trigger=False):
    """A whole legacy advertisement: Flags (LE General Discoverable, no
    BR/EDR), the Complete Local Name, and the service data. At most 31 bytes."""
    data = bthome_v2(objects, trigger)
    out = bytearray(b"\x02\x01\x06")
    if name:
        n = name.encode()
        out += bytes((len(n) + 1, 0x09)) + n
    out += bytes((len(data) + 3, 0x16, BTHOME_UUID & 0xFF, BTHOME_UUID >> 8)) + data
    if len(out) > 31:
        raise ValueError("advertisement is %d bytes, the limit is 31" % len(out))
    return bytes(out)


# --- Text forms -------------------------------------------------------------


def number(v):
    """A value as the gateway parses it, or '' for a missing one. Floats in
    the shortest form that reads back the same (repr)."""
    if v is None or isinstance(v, bool):
        return "" if v is None else ("1" if v else "0")
    if not _finite(v):
        return ""
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


def csv_line(values, columns):
    """One CSV line (no newline) in the gateway's `columns` order; a missing
    or non-finite value is an empty field, which the gateway skips."""
    return ",".join(number(values.get(c)) for c in columns)


def json_object(values, ts=None, device=None):
    """{"temperature":21.5,...,"ts":<epoch ms>}: the gateway's JSON object
    form; `device` only where the topic does not name it."""
    obj = {}
    if device is not None:
        obj["device"] = device
    for k, v in values.items():
        if v is not None and _finite(v):
            obj[k] = v
    if ts is not None:
        obj["ts"] = int(ts)
    return _dumps(obj)


def senml_pack(records, base_name=None):
    """A SenML JSON pack (RFC 8428) from [(metric, value, epoch seconds or
    None)], written out by hand so that the same records always give the
    same bytes (a message resent after a reset must be identical) and as
    few as possible (it waits in 2 KB of RTC memory):

        [{"bt":1795255200.5,"n":"temperature","v":21.5},{"n":"humidity","v":40},
         {"bt":1795255260.5,"n":"temperature","v":21.7},...]

    `bt` is redefined whenever the time changes; the records after it
    inherit it (section 4.1). Missing or non-finite values are left out."""
    out = []
    base_time = None
    for metric, value, t in records:
        if value is None or isinstance(value, bool) or not _finite(value):
            continue
        fields = []
        if base_name is not None and not out:
            fields.append('"bn":' + json.dumps(base_name))
        if t is not None and t != base_time:
            fields.append('"bt":' + number(t))
            base_time = t
        fields.append('"n":' + json.dumps(metric))
        fields.append('"v":' + number(value))
        out.append("{" + ",".join(fields) + "}")
    return "[" + ",".join(out) + "]"


def _dumps(obj):
    # MicroPython's json.dumps takes `separators` since v1.21 only; older
    # firmware gets the spaced form, which the gateway reads the same.
    try:
        return json.dumps(obj, separators=(",", ":"))
    except TypeError:
        return json.dumps(obj)
