"""BACnet/IP devices for the gateway's tests: bacpypes3, an implementation
independent of the gateway's, one NormalApplication per device on its own
loopback port.

argv[1]: JSON {"devices": [{"instance": 1001, "port": 47901,
  "segmentation": "segmentedBoth" | "noSegmentation", "max_apdu": 1476,
  "objects": [{"type": "analogInput", "instance": 1, "name": "Zone Temp",
               "value": 21.5, "units": "degreesCelsius"}, ...]}]}
Types: analogInput, analogValue, analogOutput (commandable), binaryInput, binaryValue,
multiStateInput, multiStateValue. "commandable": true on an analogValue or
binaryValue gives it a priority array (bacpypes3's own Commandable: a write
at a priority fills that slot, NULL relinquishes it, and present-value is
the highest slot set or the relinquish default, the initial value).
"count": N adds N analogValue objects (instance 100.., named av-100...,
value = index).
"rpm": false makes a device without ReadPropertyMultiple (bacpypes3's own
answer to a service it lacks: Reject unrecognized-service);
"rpm_answer": "twice" | "renamed" makes a device whose present-value
answers to ReadPropertyMultiple are wrong, as bacpypes3 builds them:
"twice" lists the first object asked a second time, its present value
777; "renamed" files the last object's results under analog-value:99,
which was not asked; "rp_answer": "renamed" (with "rpm": false) files
the ReadProperty answer of analog-value:2's present value under
analog-value:99; "bbmd": true
makes it a BBMD as well (bacpypes3's BBMDApplication), which foreign
devices register with.
"key": N names the device in the commands below instead of its instance
(default the instance): a second device answering for an instance already
taken (a duplicate device instance, a misconfigured site or a forger);
"stopped": true leaves it off until "start KEY".
INSTANCE in the commands below is that key.

Commands on stdin, each answered with "ok" (or "error ..."):
  set INSTANCE TYPE:N VALUE      change a present value (COV subscribers
                                 are notified by bacpypes3)
  raw INSTANCE TYPE:N INT        a binary or multi-state present value
                                 set to the number as given, unchecked (a
                                 binary 7, a multi-state 0: a faulty device)
  oos INSTANCE TYPE:N 0|1        out-of-service (sets status-flags)
  stop INSTANCE                  the device vanishes (its socket closed)
  start INSTANCE                 it comes back, restarted: same objects
                                 and values, no COV subscriptions
  subs INSTANCE                  prints "subs N": active COV subscriptions
  get INSTANCE TYPE:N            prints one JSON line, the object as bacpypes3
                                 holds it: {"value": present value (binary
                                 1.0/0.0), "priority": the 16 slots (null when
                                 empty), or null for an object without one}
  ramp INSTANCE TYPE:N START STEP COUNT [PAUSE]
                                 COUNT changes, START, START+STEP, ...,
                                 PAUSE seconds apart (default 0.002: each
                                 its own notification; bacpypes3 folds the
                                 changes of one turn of its event loop)
  stray INSTANCE TYPE:N VALUE    an UnconfirmedCOVNotification, as
                                 bacpypes3 builds them, to the device's
                                 first subscriber with its process id, for
                                 an object it did not subscribe to
  flood INSTANCE TYPE:N START COUNT
                                 COUNT UnconfirmedCOVNotifications of the
                                 object (START, START+1, ...) to the
                                 device's first subscriber, as fast as
                                 bacpypes3 builds them (the COV cost bench)
  forge INSTANCE FROM SUBSCRIBED OBJECT DEVICE VALUE MODE COUNT
                                 COUNT COV notifications (MODE confirmed or
                                 unconfirmed) built by bacpypes3 with the
                                 process id and subscriber address of the
                                 device INSTANCE's subscription to
                                 SUBSCRIBED (TYPE:N), claiming object OBJECT
                                 of device DEVICE with present value VALUE,
                                 sent by FROM: "self" (the device's own
                                 application) or a port, where a stranger
                                 (its own bacpypes3 application, device
                                 4194302) sends from; a confirmed one
                                 prints "answer ack", "answer error CLASS
                                 CODE", "answer reject|abort ..." or
                                 "answer none" first
  iams PORT FIRST COUNT          COUNT I-Am of instances FIRST.. (no such
                                 devices) to 127.0.0.1:PORT
  announce INSTANCE PORT         the device sends its own I-Am to
                                 127.0.0.1:PORT, as a device does when it
                                 starts
  iam PORT DEVICE FROM           a stranger (its own bacpypes3 application
                                 on port FROM, device 4194302) sends an
                                 I-Am claiming to be device DEVICE to
                                 127.0.0.1:PORT
  fdt INSTANCE                   prints "fdt ADDRESS TTL ..." of the BBMD
"""
import asyncio
import json
import sys

from bacpypes3.pdu import Address
from bacpypes3.apdu import (
    ConfirmedCOVNotificationRequest,
    ErrorPDU,
    IAmRequest,
    ReadPropertyACK,
    ReadPropertyMultipleACK,
    UnconfirmedCOVNotificationRequest,
)
from bacpypes3.basetypes import (
    PropertyIdentifier,
    PropertyValue,
    ReadAccessResult,
    ReadAccessResultElement,
    ReadAccessResultElementChoice,
    StatusFlags,
)
from bacpypes3.constructeddata import Any
from bacpypes3.primitivedata import ObjectIdentifier, Real
from bacpypes3.ipv4.app import BBMDApplication, NormalApplication
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.analog import AnalogInputObject, AnalogOutputObject, AnalogValueObject, AnalogValueObjectCmd
from bacpypes3.local.binary import BinaryInputObject, BinaryValueObject, BinaryValueObjectCmd
from bacpypes3.local.multistate import MultiStateInputObject, MultiStateValueObject

layout = json.loads(sys.argv[1])
apps = {}
strangers = {}  # port -> a bacpypes3 application that is no configured device
objects = {}  # (instance, type, n) -> the live object
values = {}  # (instance, type, n) -> current present value


def make_object(o):
    t, n = o["type"], o["instance"]
    common = dict(
        objectIdentifier=(t, n),
        objectName=o["name"],
        statusFlags=[0, 0, 0, 0],
        eventState="normal",
        outOfService=False,
    )
    v = o["value"]
    cmd = o.get("commandable", False)
    if t in ("analogInput", "analogValue", "analogOutput"):
        cls = {"analogInput": AnalogInputObject, "analogValue": AnalogValueObjectCmd if cmd else AnalogValueObject,
               "analogOutput": AnalogOutputObject}[t]
        return cls(presentValue=float(v), units=o.get("units", "noUnits"),
                   covIncrement=float(o.get("cov_increment", 0.01)), **common)
    if t in ("binaryInput", "binaryValue"):
        cls = BinaryInputObject if t == "binaryInput" else (BinaryValueObjectCmd if cmd else BinaryValueObject)
        extra = {"polarity": "normal"} if t == "binaryInput" else {}
        return cls(presentValue="active" if v else "inactive", **extra, **common)
    if t in ("multiStateInput", "multiStateValue"):
        cls = MultiStateInputObject if t == "multiStateInput" else MultiStateValueObject
        return cls(presentValue=int(v), numberOfStates=max(int(v), 4), **common)
    raise ValueError(t)


def objects_of(d):
    objs = list(d.get("objects", []))
    for i in range(d.get("count", 0)):
        objs.append({"type": "analogValue", "instance": 100 + i, "name": f"av-{100 + i}", "value": float(i)})
    return objs


class NoRpmApplication(NormalApplication):
    """A controller without ReadPropertyMultiple: bacpypes3 answers a
    service it has no handler for with Reject unrecognized-service."""

    do_ReadPropertyMultipleRequest = None


class QuirkyRpmApplication(NormalApplication):
    """A controller whose ReadPropertyMultiple answers of present values
    do not match the request (see "rpm_answer")."""

    quirk = None

    async def response(self, apdu):
        results = getattr(apdu, "listOfReadAccessResults", None)
        if isinstance(apdu, ReadPropertyMultipleACK) and results and any(
            e.propertyIdentifier == PropertyIdentifier("presentValue") for e in results[0].listOfResults
        ):
            if self.quirk == "twice":
                results.append(ReadAccessResult(
                    objectIdentifier=results[0].objectIdentifier,
                    listOfResults=[ReadAccessResultElement(
                        propertyIdentifier="presentValue",
                        readResult=ReadAccessResultElementChoice(propertyValue=Any(Real(777.0))),
                    )],
                ))
            elif self.quirk == "renamed":
                results[-1].objectIdentifier = ObjectIdentifier(("analogValue", 99))
        await super().response(apdu)


class QuirkyRpApplication(NoRpmApplication):
    """A controller without ReadPropertyMultiple whose ReadProperty answer
    of one present value names another object (see "rp_answer")."""

    async def response(self, apdu):
        if (isinstance(apdu, ReadPropertyACK)
                and apdu.objectIdentifier == ObjectIdentifier(("analogValue", 2))
                and apdu.propertyIdentifier == PropertyIdentifier("presentValue")):
            apdu.objectIdentifier = ObjectIdentifier(("analogValue", 99))
        await super().response(apdu)


def start(d):
    inst = d["instance"]
    dev = DeviceObject(
        objectIdentifier=("device", inst),
        objectName=f"dev-{inst}",
        vendorIdentifier=999,
        maxApduLengthAccepted=d.get("max_apdu", 1476),
        segmentationSupported=d.get("segmentation", "segmentedBoth"),
    )
    cls = NormalApplication
    if d.get("bbmd"):
        cls = BBMDApplication
    elif d.get("rpm", True) is False:
        cls = QuirkyRpApplication if d.get("rp_answer") else NoRpmApplication
    elif d.get("rpm_answer"):
        cls = type("Quirky", (QuirkyRpmApplication,), {"quirk": d["rpm_answer"]})
    app = cls(dev, Address(f"127.0.0.1:{d['port']}"))
    for o in objects_of(d):
        key = (d.get("key", inst), o["type"], o["instance"])
        if key in values:
            o = dict(o, value=values[key])
        values[key] = o["value"]
        obj = make_object(o)
        objects[key] = obj
        app.add_object(obj)
    apps[d.get("key", inst)] = app


def stranger(port):
    if port not in strangers:
        dev = DeviceObject(objectIdentifier=("device", 4194302), objectName="stranger",
                           vendorIdentifier=999)
        strangers[port] = NormalApplication(dev, Address(f"127.0.0.1:{port}"))
    return strangers[port]


def ref_of(text):
    t, n = text.split(":")
    return (t, int(n))


async def forge(line):
    inst, sender, subscribed, obj, device, value, mode, count = line[1:9]
    inst = int(inst)
    sub = next(s for det in apps[inst]._cov_detections.values() for s in det.cov_subscriptions
               if s.obj_id == ObjectIdentifier(ref_of(subscribed)))
    app = apps[inst] if sender == "self" else stranger(int(sender))
    cls = ConfirmedCOVNotificationRequest if mode == "confirmed" else UnconfirmedCOVNotificationRequest
    for i in range(int(count)):
        req = cls(
            subscriberProcessIdentifier=sub.proc_id,
            initiatingDeviceIdentifier=("device", int(device)),
            monitoredObjectIdentifier=ref_of(obj),
            timeRemaining=60,
            listOfValues=[
                PropertyValue(propertyIdentifier="presentValue", value=Any(Real(float(value)))),
                PropertyValue(propertyIdentifier="statusFlags", value=Any(StatusFlags([0, 0, 0, 0]))),
            ],
        )
        req.pduDestination = sub.client_addr
        future = app.request(req)
        if mode != "confirmed":
            if i % 50 == 49:
                await asyncio.sleep(0.005)
            continue
        try:
            await asyncio.wait_for(future, 5)
            print("answer ack", flush=True)
        except ErrorPDU as e:
            print(f"answer error {e.errorClass} {e.errorCode}", flush=True)
        except asyncio.TimeoutError:
            print("answer none", flush=True)
        except BaseException as e:  # Reject and Abort are BaseExceptions
            print(f"answer {type(e).__name__} {e!r}", flush=True)


def find(inst, ref):
    t, n = ref.split(":")
    return objects[(inst, t, int(n))]


def plain(v):
    """A present value or priority slot as JSON: binary as 1/0."""
    if v is None:
        return None
    text = str(v)
    if text in ("active", "inactive"):
        return 1.0 if text == "active" else 0.0
    try:
        return float(v)
    except (TypeError, ValueError):
        return text


def slot(pv):
    """One BACnetPriorityValue: None when it holds NULL."""
    choice = getattr(pv, "_choice", None)
    if choice is None or choice == "null":
        return None
    return plain(getattr(pv, choice))


def state(obj):
    array = getattr(obj, "priorityArray", None)
    return {
        "value": plain(obj.presentValue),
        "priority": None if array is None else [slot(array[i]) for i in range(16)],
    }


async def commands():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    by_instance = {d.get("key", d["instance"]): d for d in layout["devices"]}
    while line := (await reader.readline()).decode().split():
        try:
            cmd, inst = line[0], int(line[1])
            if cmd == "set":
                obj = find(inst, line[2])
                t, n = line[2].split(":")
                raw = float(line[3])
                if t.startswith("binary"):
                    obj.presentValue = "active" if raw else "inactive"
                elif t.startswith("multiState"):
                    obj.presentValue = int(raw)
                else:
                    obj.presentValue = raw
                values[(inst, t, int(n))] = raw
            elif cmd == "raw":
                find(inst, line[2]).presentValue = int(line[3])
            elif cmd == "oos":
                obj = find(inst, line[2])
                obj.outOfService = line[3] == "1"
                obj.statusFlags = [0, 0, 0, 1 if line[3] == "1" else 0]
            elif cmd == "stop":
                apps.pop(inst).close()
            elif cmd == "start":
                start(by_instance[inst])
            elif cmd == "get":
                print(json.dumps(state(find(inst, line[2]))), flush=True)
            elif cmd == "ramp":
                obj = find(inst, line[2])
                t, n = line[2].split(":")
                start_v, step, count = float(line[3]), float(line[4]), int(line[5])
                pause = float(line[6]) if len(line) > 6 else 0.002
                for i in range(count):
                    obj.presentValue = start_v + i * step
                    values[(inst, t, int(n))] = obj.presentValue
                    await asyncio.sleep(pause)
            elif cmd == "stray":
                app = apps[inst]
                sub = next(s for det in app._cov_detections.values() for s in det.cov_subscriptions)
                req = UnconfirmedCOVNotificationRequest(
                    subscriberProcessIdentifier=sub.proc_id,
                    initiatingDeviceIdentifier=("device", inst),
                    monitoredObjectIdentifier=(line[2].split(":")[0], int(line[2].split(":")[1])),
                    timeRemaining=60,
                    listOfValues=[
                        PropertyValue(propertyIdentifier="presentValue", value=Any(Real(float(line[3])))),
                        PropertyValue(propertyIdentifier="statusFlags", value=Any(StatusFlags([0, 0, 0, 0]))),
                    ],
                )
                req.pduDestination = sub.client_addr
                app.request(req)
            elif cmd == "flood":
                app = apps[inst]
                sub = next(s for det in app._cov_detections.values() for s in det.cov_subscriptions)
                kind, number = line[2].split(":")
                start_v, count = float(line[3]), int(line[4])
                for i in range(count):
                    req = UnconfirmedCOVNotificationRequest(
                        subscriberProcessIdentifier=sub.proc_id,
                        initiatingDeviceIdentifier=("device", inst),
                        monitoredObjectIdentifier=(kind, int(number)),
                        timeRemaining=60,
                        listOfValues=[
                            PropertyValue(propertyIdentifier="presentValue", value=Any(Real(start_v + i))),
                            PropertyValue(propertyIdentifier="statusFlags", value=Any(StatusFlags([0, 0, 0, 0]))),
                        ],
                    )
                    req.pduDestination = sub.client_addr
                    app.request(req)
                    if i % 64 == 63:
                        await asyncio.sleep(0)
            elif cmd == "forge":
                await forge(line)
            elif cmd == "iams":
                app = next(iter(apps.values()))
                to = Address(f"127.0.0.1:{inst}")
                first, count = int(line[2]), int(line[3])
                for n in range(first, first + count):
                    app.request(IAmRequest(
                        iAmDeviceIdentifier=("device", n),
                        maxAPDULengthAccepted=1476,
                        segmentationSupported="segmentedBoth",
                        vendorID=999,
                        destination=to,
                    ))
                    if n % 50 == 0:
                        await asyncio.sleep(0.005)
            elif cmd == "announce":
                app = apps[inst]
                app.request(IAmRequest(
                    iAmDeviceIdentifier=app.device_object.objectIdentifier,
                    maxAPDULengthAccepted=1476,
                    segmentationSupported="segmentedBoth",
                    vendorID=999,
                    destination=Address(f"127.0.0.1:{int(line[2])}"),
                ))
            elif cmd == "iam":
                app = stranger(int(line[3]))
                app.request(IAmRequest(
                    iAmDeviceIdentifier=("device", int(line[2])),
                    maxAPDULengthAccepted=1476,
                    segmentationSupported="segmentedBoth",
                    vendorID=999,
                    destination=Address(f"127.0.0.1:{inst}"),
                ))
            elif cmd == "fdt":
                entries = apps[inst].bbmd.bbmdFDT
                print("fdt " + " ".join(f"{e.fdAddress} {e.fdTTL}" for e in entries), flush=True)
            elif cmd == "subs":
                app = apps[inst]
                n = sum(len(list(d.cov_subscriptions)) for d in app._cov_detections.values()) if hasattr(app, "_cov_detections") else -1
                print(f"subs {n}", flush=True)
            print("ok", flush=True)
        except Exception as e:  # a test's mistake, reported to it
            print(f"error {e!r}", flush=True)


async def main():
    for d in layout["devices"]:
        if not d.get("stopped"):
            start(d)
    print("ready", flush=True)
    await commands()


asyncio.run(main())
