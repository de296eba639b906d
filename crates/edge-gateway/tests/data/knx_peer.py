"""The KNX devices of the knx tests: xknx (an implementation independent
of the gateway's) as a tunnelling client of knxd, driven line by line on
stdin. Prints `ready` once connected, then one JSON line per group
telegram it receives (`{"src", "dst", "service", "data", "t"}`, data as
hex or a small int, t when it arrived in seconds of the monotonic clock), and `ok` after each command once xknx has sent it.

Commands (values are JSON):
  write GA DPT VALUE    GroupValueWrite of VALUE encoded by xknx as DPT
  state GA DPT VALUE    answer GroupValueRead of GA with VALUE from now on
  raw GA HEX            GroupValueWrite of these bytes (no DPT)
  busy MS               a KNX router's ROUTING_BUSY (wait MS), encoded by
                        xknx, on the routing multicast; prints {"busy": t}
  routed CODE GA DPT VALUE
                        a ROUTING_INDICATION whose cEMI frame xknx encodes
                        with message code CODE (`req`: L_Data.req, `con`:
                        L_Data.con, which no KNX IP router routes) from
                        1.1.99, a GroupValueWrite of VALUE; sent raw on the
                        routing multicast, as a misbehaving sender would
  connect               (with `later`) connect the tunnel now; prints
                        {"channel": the channel knxd gave}
  quit                  disconnect (frees the tunnel slot) and exit

argv: knxd's UDP port, and `routing` to be a KNX IP device on knxd's
routing multicast (224.0.23.12 on loopback, that port) instead of a
tunnelling client: it then needs no knxd to start, and stays through a
knxd restart. Or `later`: a tunnelling client that prints `ready` at
once and connects only on `connect` (in milliseconds, not the seconds
Python takes to start).
"""

import asyncio
import json
import socket
import sys
import time

from xknx import XKNX
from xknx.dpt import DPTArray, DPTBase, DPTBinary
from xknx.io import ConnectionConfig, ConnectionType
from xknx.telegram import GroupAddress, Telegram
from xknx.telegram.apci import GroupValueRead, GroupValueResponse, GroupValueWrite


def encode(dpt, value):
    if dpt == "18.001":
        from xknx.dpt.dpt_18 import SceneControl

        return DPTBase.parse_transcoder(dpt).to_knx(SceneControl(scene_number=value, learn=False))
    if dpt == "20.102":
        from xknx.dpt.dpt_20 import HVACOperationMode

        mode = DPTBase.parse_transcoder(dpt).from_knx(DPTArray((value,)))
        assert isinstance(mode, HVACOperationMode)
        return DPTBase.parse_transcoder(dpt).to_knx(mode)
    return DPTBase.parse_transcoder(dpt).to_knx(value)


def data_of(payload):
    value = payload.value
    if isinstance(value, DPTBinary):
        return value.value
    if isinstance(value, DPTArray):
        return bytes(value.value).hex()
    return None


async def main():
    port = int(sys.argv[1])
    states = {}
    xknx = None

    def received(telegram):
        p = telegram.payload
        service = {GroupValueWrite: "write", GroupValueRead: "read", GroupValueResponse: "response"}.get(type(p))
        if service is None:
            return
        dst = str(telegram.destination_address)
        line = {"src": str(telegram.source_address), "dst": dst, "service": service, "t": time.monotonic()}
        if service != "read":
            line["data"] = data_of(p)
        print(json.dumps(line), flush=True)
        if service == "read" and dst in states:
            xknx.telegrams.put_nowait(
                Telegram(destination_address=GroupAddress(dst), payload=GroupValueResponse(states[dst]))
            )

    if sys.argv[2:] == ["routing"]:
        connection = ConnectionConfig(
            connection_type=ConnectionType.ROUTING,
            local_ip="127.0.0.1",
            multicast_group="224.0.23.12",
            multicast_port=port,
        )
    else:
        connection = ConnectionConfig(
            connection_type=ConnectionType.TUNNELING,
            gateway_ip="127.0.0.1",
            gateway_port=port,
            local_ip="127.0.0.1",
        )
    xknx = XKNX(connection_config=connection, telegram_received_cb=received)
    later = sys.argv[2:] == ["later"]
    if not later:
        await xknx.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode():
        parts = line.split(maxsplit=3)
        if not parts:
            continue
        if parts[0] == "quit":
            break
        if parts[0] == "connect" and later:
            await xknx.start()
            channel = xknx.knxip_interface._interface.communication_channel
            print(json.dumps({"channel": channel}), flush=True)
            print("ok", flush=True)
            continue
        if parts[0] == "busy":
            from xknx.knxip import KNXIPFrame, RoutingBusy

            frame = KNXIPFrame.init_from_body(RoutingBusy(wait_time=int(parts[1])))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
                out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
                out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                out.sendto(bytes(frame.to_knx()), ("224.0.23.12", port))
                print(json.dumps({"busy": time.monotonic()}), flush=True)
            print("ok", flush=True)
            continue
        if parts[0] == "routed":
            from xknx.cemi import CEMIFrame, CEMILData, CEMIMessageCode
            from xknx.knxip import KNXIPFrame, RoutingIndication
            from xknx.telegram import IndividualAddress

            code, rest = parts[1], [parts[2], *parts[3].split(maxsplit=1)]
            message = {"req": CEMIMessageCode.L_DATA_REQ, "con": CEMIMessageCode.L_DATA_CON}[code]
            telegram = Telegram(
                destination_address=GroupAddress(rest[0]),
                payload=GroupValueWrite(encode(rest[1], json.loads(rest[2]))),
            )
            cemi = CEMIFrame(
                code=message,
                data=CEMILData.init_from_telegram(telegram, src_addr=IndividualAddress("1.1.99")),
            )
            frame = KNXIPFrame.init_from_body(RoutingIndication(raw_cemi=cemi.to_knx()))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
                out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
                out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                out.sendto(bytes(frame.to_knx()), ("224.0.23.12", port))
            print("ok", flush=True)
            continue
        ga = GroupAddress(parts[1])
        if parts[0] == "write":
            payload = encode(parts[2], json.loads(parts[3]))
            await xknx.telegrams.put(Telegram(destination_address=ga, payload=GroupValueWrite(payload)))
        elif parts[0] == "state":
            states[str(ga)] = encode(parts[2], json.loads(parts[3]))
        elif parts[0] == "raw":
            payload = DPTArray(bytes.fromhex(parts[2]))
            await xknx.telegrams.put(Telegram(destination_address=ga, payload=GroupValueWrite(payload)))
        await xknx.telegrams.join()
        print("ok", flush=True)
    await xknx.stop()
    print("bye", flush=True)


asyncio.run(main())
