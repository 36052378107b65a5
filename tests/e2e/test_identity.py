"""Assets with the identity they state on the wire, each attribute with where and when it was
seen, cross-checked with tshark; a changed identity and a known identity from a new MAC are
alerts; the S7 protection level feeds its scan check."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support import PCAPS, opcua_peers, public, run_icsguard
from tests.support.peers import HOST, record
from tests.support.rewrite import frames, write_pcap

PLC_STATUS = "ITI-ICS-Security-Tools/s7/s7comm_reading_plc_status.pcap"     # an IM151-8 CPU asked for its status
PLC, PLC_MAC = "192.168.1.40", "00:1b:1b:23:eb:3b"


def _assets(db: Path) -> dict[str, dict]:
    result = run_icsguard("assets", "--db", db, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return {a["ip"]: a for a in map(json.loads, result.stdout.splitlines())}


def _identity(asset: dict) -> dict[str, dict]:
    return {i["attribute"]: i for i in asset["identity"]}


def _tshark(capture: Path, *fields: str) -> list[str]:
    """The first value of each field in the capture (of the first frame that has it)."""
    found = []
    for field in fields:
        out = subprocess.run(["tshark", "-r", str(capture), "-Y", field, "-T", "fields", "-e", field],
                             capture_output=True, text=True, check=True).stdout.splitlines()
        found.append(out[0].split(",")[0].strip() if out else "")
    return found


def test_an_s7_cpus_identity_agrees_with_tshark(tmp_path):
    capture = public(PLC_STATUS)
    db = tmp_path / "s7.db"
    assert run_icsguard("analyze", "--db", db, capture).returncode == 0
    plc = _assets(db)[PLC]
    seen = _identity(plc)
    order, serial, station, cpu_type, key, assigned, valid = _tshark(
        capture, "s7comm.szl.xy11.0001.anz", "s7comm.szl.001c.0005.serialn", "s7comm.szl.001c.0001.name",
        "s7comm.szl.001c.0007.cputypname", "s7comm.szl.0132.0004.key", "s7comm.szl.0132.0004.param",
        "s7comm.szl.0132.0004.real")
    assert (plc["model"], plc["serial"]) == (order, serial) and order.startswith("6ES7")
    assert (seen["station_name"]["value"], seen["module_type"]["value"]) == (station, " ".join(cpu_type.split()))
    assert seen["protection_level"]["value"] == valid and (key, assigned) == ("1", "0")
    assert plc["firmware"] == "V3.2.6" and seen["operating_mode"]["value"] == "RUN"
    assert seen["serial"]["proto"] == "s7comm" and seen["serial"]["message"] == "read_szl"
    assert seen["serial"]["capture"] == capture.name and seen["serial"]["frame"] > 0
    assert plc["role"] == "plc" and plc["vendor"].startswith("Siemens")


def test_real_peers_state_who_they_are(tmp_path):
    db = tmp_path / "peers.db"
    build_info = tmp_path / "buildinfo.pcap"
    opcua_peers.certificates()
    with opcua_peers.start_server(secure=False) as server, record(build_info, server.port):
        opcua_peers.read_nodes(server.port, node_ids=["i=2261", "i=2262", "i=2263", "i=2264", "i=2265"])
    assert run_icsguard("analyze", "--db", db, PCAPS / "s7_identification.pcap", PCAPS / "modbus_diagnostics.pcap",
                        build_info).returncode == 0
    seen = _identity(_assets(db)[HOST])
    # python-snap7's server: SZL 0x0011 and 0x001C
    assert seen["order_number"]["value"] == "6ES7 315-2EH14-0AB0" and seen["serial"]["value"] == "S C-C2UR28922012"
    assert seen["order_number"]["message"] == "read_szl"
    # pymodbus: FC 43/14 with the identity its server was given, FC 17
    assert (seen["vendor"]["value"], seen["product_code"]["value"]) == ("icsguard test vendor", "ICSG-PLC-1")
    assert seen["vendor"]["message"] == "read_device_identification" and seen["server_id"]["proto"] == "modbus"
    # asyncua: its certificate and its BuildInfo, read by a client
    assert seen["certificate_subject"]["value"].startswith("CN=")
    assert seen["product_uri"]["message"] == "ReadResponse" and seen["product_name"]["value"]
    assert seen["vendor"]["first_seen"] <= seen["vendor"]["last_seen"]


def test_a_changed_firmware_is_an_alert(tmp_path):
    found = frames(PCAPS / "modbus_diagnostics.pcap")
    assert any(b"1.4" in f.data for f in found)
    reflashed = write_pcap(tmp_path / "reflashed.pcap", [(f.ts + 86400, f.data.replace(b"1.4", b"1.5"))
                                                         for f in found], found[0].link_type)
    db = tmp_path / "change.db"
    assert run_icsguard("analyze", "--db", db, PCAPS / "modbus_diagnostics.pcap").returncode == 0
    assert run_icsguard("analyze", "--db", db, reflashed).returncode == 0
    alerts = [json.loads(line) for line in run_icsguard("alerts", "--db", db, "--format", "jsonl").stdout.splitlines()]
    changed = [a for a in alerts if a["rule"] == "asset.identity_changed"]
    assert changed and "firmware_version 1.4 -> 1.5" in changed[0]["title"]
    assert changed[0]["mitre"] == ["T0839", "T0848"] and changed[0]["src"] == HOST
    assert _assets(db)[HOST]["firmware"] == "1.5"


def test_a_known_identity_from_a_new_mac_is_an_alert(tmp_path):
    capture = public(PLC_STATUS)
    found = frames(capture)
    old, new = bytes.fromhex(PLC_MAC.replace(":", "")), bytes.fromhex("020000000042")
    swapped = write_pcap(tmp_path / "swapped.pcap", [(f.ts + 86400, f.data[:6] + new + f.data[12:]
                                                      if f.data[6:12] == old else f.data) for f in found],
                         found[0].link_type)
    db = tmp_path / "mac.db"
    assert run_icsguard("analyze", "--db", db, capture).returncode == 0
    assert run_icsguard("analyze", "--db", db, swapped).returncode == 0
    alerts = [json.loads(line) for line in run_icsguard("alerts", "--db", db, "--format", "jsonl").stdout.splitlines()]
    assert [a["title"] for a in alerts if a["rule"] == "asset.identity_new_mac"] == [
        f"A known device's identity answered from a new MAC address: {PLC} answered from 02:00:00:00:00:42, "
        f"known as {PLC_MAC}"]


def test_the_protection_level_check_of_the_scan(tmp_path):
    capture = public(PLC_STATUS)
    found = frames(capture)
    level_1 = bytes.fromhex("0004000100000001")          # index 4, key 1, password 0, valid 1
    assert sum(level_1 in f.data for f in found) == 1
    protected = write_pcap(tmp_path / "protected.pcap", [(f.ts, f.data.replace(level_1, bytes.fromhex(
        "0004000300030003"))) for f in found], found[0].link_type)

    def status(*captures) -> str:
        result = run_icsguard("scan", "--db", tmp_path / f"{len(list(tmp_path.iterdir()))}.db", *captures,
                              "--format", "json")
        return {c["id"]: c["status"] for c in json.loads(result.stdout)["checks"]}["hardening.s7_protection_level"]

    assert status(capture) == "FAIL"
    assert status(protected) == "PASS"
    assert status(PCAPS / "s7_control.pcap") == "NOT_ASSESSED"


def test_a_model_file_knows_identities_too(tmp_path):
    """A fresh database, but the model learned the device: the reflashed firmware is still news."""
    found = frames(PCAPS / "modbus_diagnostics.pcap")
    reflashed = write_pcap(tmp_path / "reflashed.pcap", [(f.ts + 86400, f.data.replace(b"1.4", b"1.5"))
                                                         for f in found], found[0].link_type)
    model = tmp_path / "plant.icsg"
    assert run_icsguard("learn", PCAPS / "modbus_diagnostics.pcap", "--model", model).returncode == 0
    db = tmp_path / "fresh.db"
    assert run_icsguard("analyze", "--db", db, "--model", model, reflashed).returncode == 0
    alerts = [json.loads(line) for line in run_icsguard("alerts", "--db", db, "--format", "jsonl").stdout.splitlines()]
    assert any(a["rule"] == "asset.identity_changed" and "firmware_version 1.4 -> 1.5" in a["title"] for a in alerts)
