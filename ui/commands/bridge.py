"""``attune bridge ble-hr``: a Bluetooth LE heart-rate strap to LSL.

Examples::

    attune bridge ble-hr --scan
    attune bridge ble-hr --name "Polar H10 8554112A" --participant P1
    attune bridge ble-hr --address C8:2E:1A:00:11:22 --participant P2 --lsl-scope link
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ..errors import UsageError
from .options import SCOPES, check_at_least, check_positive

__all__ = ["register", "run"]


def register(subparsers) -> None:
    """Add ``bridge`` and its ``ble-hr`` subcommand."""
    parser = subparsers.add_parser(
        "bridge", help="bring a wearable's data onto LSL (ble-hr: Bluetooth heart-rate straps)",
        description="Bridges from wearables to LSL streams that follow Attune's convention.")
    sub = parser.add_subparsers(dest="bridge", metavar="BRIDGE")
    ble = sub.add_parser(
        "ble-hr", help="a Bluetooth LE heart-rate device (Polar, Wahoo, Garmin, Movesense, Coospo ...) to LSL",
        description=(
            "Connect to a device exposing the standard Heart Rate Service (0x180D) and publish its RR intervals "
            "(type RR, ms, one sample per beat) and heart rate (type HR, bpm) on LSL, with the participant in the "
            "stream description so the monitor needs no roster. Reconnects when the device drops out."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run one bridge per strap: e.g. two terminals, --participant P1 and --participant P2.")
    ble.add_argument("--scan", action="store_true",
                     help="list nearby devices advertising the Heart Rate Service (name, address, RSSI) and exit")
    ble.add_argument("--scan-time", type=float, default=8.0, metavar="SECONDS",
                     help="how long to scan in seconds, a positive number (default %(default)g s)")
    ble.add_argument("--address", help="Bluetooth address of the device (a UUID on macOS); see --scan")
    ble.add_argument("--name", help="connect to the device whose BLE name contains NAME, e.g. the serial "
                                    "printed on the strap ('8554112A') or 'Polar H10'")
    ble.add_argument("--participant", metavar="ID", help="pseudonym written into the streams (P1, P2 ...); required "
                                                         "to connect")
    ble.add_argument("--stream-name", metavar="NAME",
                     help="base of the LSL stream names (default '<participant> <manufacturer> <device>'); "
                          "' RR' and ' HR' are appended")
    ble.add_argument("--lsl-scope", choices=SCOPES, default="machine",
                     help="who can see the streams: this computer only (machine, default), the local network "
                          "segment (link) or the site. Physiological data: widen only on a network you trust.")
    ble.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                     help="stop after this many seconds, a positive number (default: run until Ctrl+C)")
    ble.add_argument("--max-attempts", type=int, default=20,
                     help="consecutive failed connection attempts before giving up, 1 or more (default %(default)s)")
    ble.set_defaults(func=run)
    parser.set_defaults(func=lambda args: _missing_bridge(parser))


def _missing_bridge(parser) -> int:
    raise UsageError("no bridge given; expected one of: ble-hr (e.g. 'attune bridge ble-hr --scan').")


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def run(args) -> int:
    """Run ``attune bridge ble-hr``."""
    from attune_monitor.acquisition import lslconfig

    check_positive("--scan-time", args.scan_time, example=8)
    check_positive("--duration", args.duration, example=3600)
    check_at_least("--max-attempts", args.max_attempts, 1)
    if not args.scan and not (args.participant and args.participant.strip()):
        raise UsageError("--participant is required to connect: give the pseudonym of the person wearing this "
                         "device, e.g. --participant P1 (or use --scan to list devices).")
    try:
        lslconfig.configure(args.lsl_scope)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(str(exc)) from exc

    import asyncio

    from attune_monitor.acquisition import ble_hr  # imports pylsl lazily, after the configuration

    # bleak warns at import time on computers without bluetoothctl; our own message says what matters.
    logging.getLogger("bleak.backends.bluezdbus.version").setLevel(logging.ERROR)

    try:
        if args.scan:
            return asyncio.run(_scan(ble_hr, args.scan_time))
        return asyncio.run(_bridge(ble_hr, args))
    except LookupError as exc:
        raise UsageError(str(exc)) from exc
    except ble_hr.GaveUp as exc:
        print(f"attune bridge: {exc}", file=sys.stderr)
        return 1


async def _scan(ble_hr, seconds: float) -> int:
    _say(f"scanning {seconds:g} s for devices advertising the Heart Rate Service (0x180D) ...")
    found = await ble_hr.scan_heart_rate_devices(seconds)
    if not found:
        _say("none found: wear the strap (most advertise only with skin contact; moisten the electrodes), "
             "bring it close, and disconnect it from phone apps.")
        return 0
    print(f"{'name':<28} {'address':<40} RSSI")
    for d in found:
        print(f"{(d.name or '?'):<28} {d.address:<40} {d.rssi if d.rssi is not None else '?'}")
    return 0


async def _bridge(ble_hr, args) -> int:
    device = await ble_hr.resolve_device(args.address, args.name, timeout=args.scan_time)
    last_line = [0.0]

    def on_status(status) -> None:
        _say(status.message)

    def on_measurement(m) -> None:
        now = time.monotonic()
        if now - last_line[0] >= 5.0:  # a live line every 5 s, not one per beat
            last_line[0] = now
            rr = ", ".join(f"{v:.0f}" for v in m.rr_ms) or "-"
            contact = {"detected": "ok", "not_detected": "NO CONTACT", "not_supported": "n/a"}[m.contact]
            _say(f"{args.participant}: HR {m.heart_rate} bpm, RR {rr} ms, contact {contact}")

    bridge = ble_hr.HeartRateBridge(
        device.address, args.participant, device_name=device.name or None, stream_name=args.stream_name,
        policy=ble_hr.ReconnectPolicy(max_attempts=args.max_attempts), on_status=on_status,
        on_measurement=on_measurement)
    try:
        await bridge.run(duration=args.duration)
    finally:
        bridge.close()
    return 0
