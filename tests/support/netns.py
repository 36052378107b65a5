"""Network namespaces made and removed by a test, alone or joined by a veth pair: the only
networks the replay and sensor tests send anything on."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def sh(command: str) -> None:
    subprocess.run(command, shell=True, check=True, capture_output=True)


@contextmanager
def namespace(name: str) -> Iterator[None]:
    """A network namespace of its own, with only its loopback up."""
    sh(f"ip netns del {name} 2>/dev/null; true")
    sh(f"ip netns add {name} && ip -n {name} link set lo up")
    try:
        yield
    finally:
        sh(f"ip netns del {name}")


@contextmanager
def veth_pair(name: str) -> Iterator[None]:
    """Namespaces NAME1 and NAME2 joined by the veth pair NAME1a-NAME2a: no addresses, and the
    MTU of loopback, where the committed captures were recorded."""
    with namespace(f"{name}1"), namespace(f"{name}2"):
        sh(f"ip link add {name}1a type veth peer name {name}2a"
           f" && ip link set {name}1a netns {name}1 && ip link set {name}2a netns {name}2")
        for side in ("1", "2"):
            ns, dev = f"{name}{side}", f"{name}{side}a"
            sh(f"ip netns exec {ns} sysctl -qw net.ipv6.conf.{dev}.disable_ipv6=1 && "
               f"ip -n {ns} link set {dev} mtu 65535 up")
        yield


def python_in(name: str, *args) -> list[str]:
    """The command line that runs this Python inside a namespace."""
    return ["ip", "netns", "exec", name, sys.executable, *map(str, args)]


def icsguard_in(name: str, *args) -> list[str]:
    """The command line that runs icsguard inside a namespace."""
    return python_in(name, "-m", "icsguard", *args)
