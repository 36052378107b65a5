"""Captures written back onto a wire, to test a sensor: each frame at its own time from a fixed
start (a long replay does not drift), scaled by a speed, or as fast as the interface takes them.

Only onto an interface without an IP address unless forced: a plant's writes replayed onto a
live control network by mistake would be obeyed.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import socket
import struct
import time
from dataclasses import dataclass
from typing import Iterable

from icsguard.capture.files import read_captures

ETHERNET = 1
SIOCGIFADDR = 0x8915


class ReplayError(Exception):
    """A replay that cannot be done; the message is one line for the user."""


@dataclass
class Replayed:
    packets: int = 0
    bytes: int = 0
    seconds: float = 0.0
    skipped: int = 0          # frames of a link type other than Ethernet
    too_long: int = 0         # frames longer than the interface's MTU (captured with offloading)


def interface_addresses(iface: str) -> list[str]:
    """The IPv4 address and the IPv6 addresses beyond link-local that an interface carries."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", iface.encode()[:15]))
            found.append(socket.inet_ntoa(answer[20:24]))
        except OSError:
            pass                  # no IPv4 address
    try:
        with open("/proc/net/if_inet6") as table:
            for line in table:
                address, _index, _prefix, scope, _flags, name = line.split()
                if name == iface and scope != "20":          # 0x20: link-local
                    found.append(str(ipaddress.IPv6Address(bytes.fromhex(address))))
    except OSError:
        pass
    return found


def replay(paths: Iterable[str], iface: str, speed: float = 1.0, topspeed: bool = False, loop: int = 1,
           force: bool = False) -> Replayed:
    """Write the captures' Ethernet frames onto ``iface``, ``loop`` times."""
    paths = list(paths)
    if iface not in {name for _, name in socket.if_nameindex()}:
        raise ReplayError(f"{iface}: no such interface")
    addresses = interface_addresses(iface)
    if addresses and not force:
        raise ReplayError(f"{iface} carries {', '.join(addresses)}: replaying onto a live network could "
                          f"drive real devices; use an interface without addresses, or --force")
    if speed <= 0:
        raise ReplayError("--speed must be more than 0")
    done = Replayed()
    try:
        wire = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        wire.bind((iface, 0))
    except OSError as exc:
        raise ReplayError(f"{iface}: cannot send raw frames ({exc.strerror}; it needs root or CAP_NET_RAW)") from None
    started = time.monotonic()
    offset = 0.0                  # capture seconds of the loops before this one
    with wire:
        for _ in range(max(loop, 1)):
            first = last = None
            for frame in read_captures(paths):
                if frame.link_type != ETHERNET:
                    done.skipped += 1
                    continue
                if first is None:
                    first = frame.ts
                last = frame.ts
                if not topspeed:
                    wait = started + (offset + frame.ts - first) / speed - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                try:
                    wire.send(frame.data)
                except OSError as exc:
                    if exc.errno == errno.EMSGSIZE:
                        done.too_long += 1
                        continue
                    raise ReplayError(f"{iface}: sending frame {frame.number} of {frame.capture} failed "
                                      f"({exc.strerror})") from None
                done.packets += 1
                done.bytes += len(frame.data)
            if first is not None:
                offset += last - first
    done.seconds = time.monotonic() - started
    return done

