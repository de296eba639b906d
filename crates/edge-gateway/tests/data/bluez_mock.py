"""A mock bluetoothd for tests/protocols/ble_radio.rs: python3-dbusmock's bluez5
template on the bus in DBUS_SYSTEM_BUS_ADDRESS, one adapter and one device.

Protocol on stdin/stdout, one line each, so the test waits on events:
prints "ready" once org.bluez is up with hci0 and the device; on "send"
sets the device's RSSI, ServiceData and ManufacturerData (each emits
PropertiesChanged, as bluetoothd does per advertisement) and prints "sent";
exits on EOF.

Properties.Set is used rather than the mock's UpdateProperties: in 0.28.7
UpdateProperties cannot wrap a dictionary value ("'dbus.Dictionary' object
has no attribute 'conjugate'", mockobject.py _wrap_in_dbus_variant).
"""
import sys

import dbus
import dbusmock

# bluez_mock.py MAC UUID SERVICE_HEX COMPANY_HEX MANUFACTURER_HEX ADAPTERS
MAC, UUID, SERVICE_HEX, COMPANY, MANUFACTURER_HEX, ADAPTERS = sys.argv[1:7]

server = dbusmock.DBusTestCase.spawn_server_template("bluez5", {}, system_bus=True)
bus = dbusmock.DBusTestCase.get_dbus(system_bus=True)
mock = dbus.Interface(bus.get_object("org.bluez", "/"), "org.bluez.Mock")
if ADAPTERS != "0":
    mock.AddAdapter("hci0", "gateway")
    mock.AddDevice("hci0", MAC, "sensor")
print("ready", flush=True)

for line in sys.stdin:
    if line.strip() != "send":
        continue
    path = "/org/bluez/hci0/dev_" + MAC.replace(":", "_")
    props = dbus.Interface(bus.get_object("org.bluez", path), dbus.PROPERTIES_IFACE)
    props.Set("org.bluez.Device1", "RSSI", dbus.Int16(-61))
    props.Set(
        "org.bluez.Device1",
        "ServiceData",
        dbus.Dictionary({UUID: dbus.ByteArray(bytes.fromhex(SERVICE_HEX))}, signature="sv"),
    )
    props.Set(
        "org.bluez.Device1",
        "ManufacturerData",
        dbus.Dictionary(
            {dbus.UInt16(int(COMPANY, 16)): dbus.ByteArray(bytes.fromhex(MANUFACTURER_HEX))}, signature="qv"
        ),
    )
    print("sent", flush=True)

# python-dbusmock returns the server process, or (process, object) in
# newer releases.
process = server[0] if isinstance(server, tuple) else server
process.terminate()
process.wait()
