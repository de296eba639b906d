"""A Modbus device (TCP or RTU server) for the gateway's tests: pymodbus,
an implementation independent of the gateway's.

argv: tcp PORT | rtu PATH, then a JSON layout:
  {"units": {"1": {"holding": {"0": [w, ...]}, "input": {...},
                   "coil": {"0": [1, 0]}, "discrete": {...}}}}
Each "start": [values] is a block; addresses outside every block answer
exception 2. Commands on stdin: "mute N" / "unmute N" (unit N stops
answering, as a vanished RS-485 device does), "count" (prints
"count UNIT FUNCTION N" per unit and function code seen, then "end").
pymodbus answers an unknown unit with exception 4 where a real RS-485
device stays silent: "mute" is the silent one.
"""
import asyncio
import json
import sys
from collections import Counter

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

mode, where, layout = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
muted = set()
seen = Counter()


def blocks(table, kind):
    # pymodbus refuses an empty table: one block far away stands for none.
    table = table or {"65000": [0]}
    return [
        SimData(
            address=int(start),
            values=[bool(v) for v in values] if kind == DataType.BITS else values,
            datatype=kind,
        )
        for start, values in table.items()
    ]


devices = []
for unit, tables in layout["units"].items():
    devices.append(
        SimDevice(
            id=int(unit),
            simdata=(
                blocks(tables.get("coil", {}), DataType.BITS),
                blocks(tables.get("discrete", {}), DataType.BITS),
                blocks(tables.get("holding", {}), DataType.REGISTERS),
                blocks(tables.get("input", {}), DataType.REGISTERS),
            ),
        )
    )


def trace_pdu(sending, pdu):
    if not sending:
        seen[(pdu.dev_id, pdu.function_code)] += 1
    return pdu


def trace_packet(sending, packet):
    # The answer's unit id: after the MBAP header on TCP, first on RTU.
    at = 6 if mode == "tcp" else 0
    if sending and len(packet) > at and packet[at] in muted:
        return b""
    return packet


async def commands():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "mute":
            muted.add(int(line[1]))
        elif line[0] == "unmute":
            muted.discard(int(line[1]))
        elif line[0] == "count":
            for (unit, fc), n in sorted(seen.items()):
                print(f"count {unit} {fc} {n}")
        print("end", flush=True)


async def main():
    if mode == "tcp":
        server = ModbusTcpServer(devices, address=("127.0.0.1", int(where)), trace_pdu=trace_pdu, trace_packet=trace_packet)
    else:
        server = ModbusSerialServer(devices, framer=FramerType.RTU, port=where, baudrate=19200, parity="N", trace_pdu=trace_pdu, trace_packet=trace_packet)
    await server.serve_forever(background=True)
    print("ready", flush=True)
    await commands()


asyncio.run(main())
