"""Device identities in the public captures, cross-checked with tshark.

    python -m bench.identity_public

Analyses every public capture that holds S7 SZL answers, Modbus device identification or OPC
UA certificates, one at a time, and prints a Markdown table of the assets that stated an
identity (vendor, model, firmware, serial, and the other attributes). For S7 it asks tshark for
the same answers (order number, serial, station and module type names, protection level) and
says whether each value agrees.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from icsguard.analysis import analyze
from icsguard.capture.files import CaptureError
from icsguard.output.store import Store

REPO = Path(__file__).resolve().parent.parent
PUBLIC = REPO.parent / "shared" / "pcaps" / "public"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")
TSHARK_S7 = {"order_number": "s7comm.szl.xy11.0001.anz", "serial": "s7comm.szl.001c.0005.serialn",
             "station_name": "s7comm.szl.001c.0001.name", "module_type": "s7comm.szl.001c.0007.cputypname",
             "protection_level": "s7comm.szl.0132.0004.real"}
SCREEN = "s7comm.szl.xy11.0001.anz || s7comm.szl.001c.0005.serialn || modbus.mei || opcua.transport.type == \"OPN\""


def tshark_values(capture: Path) -> dict[str, set[str]]:
    """What tshark reads for each S7 identity attribute, every value it shows."""
    found: dict[str, set[str]] = {}
    for attribute, field in TSHARK_S7.items():
        out = subprocess.run(["tshark", "-r", str(capture), "-Y", field, "-T", "fields", "-e", field],
                             capture_output=True, text=True).stdout
        values = {" ".join(v.split()) for line in out.splitlines() for v in line.split(",") if v.strip()}
        if values:
            found[attribute] = values
    return found


def candidates() -> list[Path]:
    found = []
    for path in sorted(PUBLIC.rglob("*")):
        if path.suffix in CAPTURE_SUFFIXES and path.is_file():
            out = subprocess.run(["tshark", "-r", str(path), "-Y", SCREEN, "-T", "fields", "-e", "frame.number"],
                                 capture_output=True, text=True)
            if out.stdout.strip():
                found.append(path)
    return found


def main() -> None:
    print("| capture | host | vendor | model | firmware | serial | other attributes | tshark agrees |")
    print("|---|---|---|---|---|---|---|---|")
    for capture in candidates():
        with tempfile.TemporaryDirectory() as folder:
            store = Store(str(Path(folder) / "id.db"))
            try:
                analyze([str(capture)], store)
            except CaptureError:
                continue
            assets = [a for a in store.assets() if a["identity"]]
            store.close()
        oracle = tshark_values(capture)
        for a in assets:
            seen = {i["attribute"]: i["value"] for i in a["identity"]}
            checked = [(k, seen[k] in oracle[k]) for k in TSHARK_S7 if k in seen and k in oracle]
            agrees = ", ".join(f"{k} {'yes' if ok else 'NO'}" for k, ok in checked) or "-"
            others = ", ".join(f"{k}={v}" for k, v in sorted(seen.items())
                               if k not in ("vendor", "order_number", "model", "firmware_version", "serial")
                               and not k.startswith("certificate_n"))
            print(f"| {capture.relative_to(PUBLIC)} | {a['ip']} | {a['vendor'] or '-'} | {a['model'] or '-'} | "
                  f"{a['firmware'] or '-'} | {a['serial'] or '-'} | {others[:160]} | {agrees} |", flush=True)


if __name__ == "__main__":
    main()
