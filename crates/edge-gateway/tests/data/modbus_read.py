"""Reads registers or coils from a Modbus TCP server with pymodbus's
client, for the command tests' read-back (an implementation independent
of the gateway's).

argv: PORT UNIT TABLE(holding|coil) ADDRESS COUNT
prints the values, space-separated, on one line.
"""
import sys

from pymodbus.client import ModbusTcpClient

port, unit, table, address, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
client = ModbusTcpClient("127.0.0.1", port=int(port))
if not client.connect():
    sys.exit("cannot connect")
if table == "coil":
    r = client.read_coils(address, count=count, device_id=unit)
    values = [int(b) for b in r.bits[:count]]
else:
    r = client.read_holding_registers(address, count=count, device_id=unit)
    values = r.registers
client.close()
if r.isError():
    sys.exit(f"error {r}")
print(" ".join(str(v) for v in values))
