"""Real OPC UA peers on loopback: an asyncua server and client, recorded with tcpdump.

The OPC UA counterpart of peers.py, whose ``record`` it uses. Captures made
here hold what asyncua really puts on the wire (Hello/Acknowledge,
OpenSecureChannel, sessions, services, signed and encrypted chunks), so
parsers are tested against a real stack rather than hand-built frames.

Typical use::

    transcript = capture("opcua.pcap", none_anonymous, port=4840)

Each scenario returns its *transcript*: a list of JSON-ready dicts, one per
client action, each with ``action``, ``node_id`` (e.g. "ns=2;i=2", or None),
``value`` (written, read, returned, or None) and ``error`` (None, or
"StatusName: message" when the server refused). Extra keys, by action:

- connect: endpoint_url, security_policy_uri, security_mode ("None", "Sign",
  "SignAndEncrypt"), token_type ("anonymous" or "username"), username and
  password (None for anonymous), client_host, client_port
- browse: ``value`` is the list of child node ids
- call: object_id (the method's parent); ``value`` is the method's output
- subscribe: subscription_id, publishing_interval (ms)
- monitor (a data-change monitored item): subscription_id; ``value`` is the
  list of values notified before the scenario went on

- oversized_open (error_burst, raw sockets): ``value`` is the answer to the Hello
  ("ACK"), ``error`` the ERR's status ("ERR: 0x80B80000")

Scenarios for the rules (tests/e2e/test_rules_opcua.py records them live):
browse_enumeration, error_burst, rogue_write (from ROGUE_HOST), ca_signed and
dated_certificates (both on a server with CA-issued certificates, see SERVERS).

``flood_polling`` instead polls as fast as it can and keeps no transcript: it
makes the bench capture (make_captures.py ``--bench-opcua``).

The certificates for Basic256Sha256 (self-signed by default, or issued by a test CA:
``ca_certificates``) are generated at runtime into a temporary directory that is
removed when the process exits.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import shutil
import socket
import struct
import tempfile
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from multiprocessing import util
from pathlib import Path
from typing import Any
from unittest import mock

from asyncua import Client, Server, ua, uamethod
from asyncua.client.ua_client import UaClient
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256, SecurityPolicyNone
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.peers import CLIENT_HOST, HOST, record

OPCUA_PORT = 4840
NAMESPACE = "urn:icsguard:pump"
SERVER_URI = "urn:icsguard:opcua:server"
CLIENT_URI = "urn:icsguard:opcua:client"
USERNAME, PASSWORD = "operator", "Secret-Passw0rd"
WRONG_PASSWORD = "wrong-password"
# Fixed node ids, so transcripts and captures agree run after run; the method's
# is a string id so both NodeId encodings appear on the wire.
NODE_IDS = {"Pump1": "ns=2;i=1", "Speed": "ns=2;i=2", "Running": "ns=2;i=3",
            "Setpoint": "ns=2;i=4", "Start": "ns=2;s=Pump1.Start"}
# Pump1's variables: name -> (initial value, variant type); all writable.
VARIABLES = {
    "Speed": (1450.0, ua.VariantType.Double),
    "Running": (False, ua.VariantType.Boolean),
    "Setpoint": (1500, ua.VariantType.Int32),
}
MODES = {"None": ua.MessageSecurityMode.None_, "Sign": ua.MessageSecurityMode.Sign,
         "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
# flood_polling's cycle, as an HMI polls: Pump1's variables in one ReadRequest, the
# setpoint written every tenth transaction, Pump1 browsed every twentieth.
POLL_CYCLE = ("read",) * 9 + ("write",) + ("read",) * 9 + ("browse",)


def endpoint_url(port: int = OPCUA_PORT) -> str:
    return f"opc.tcp://{HOST}:{port}/icsguard/"


@functools.cache
def certificates() -> dict[str, Path]:
    """Self-signed server and client key/certificate pairs, made once per process."""
    folder = Path(tempfile.mkdtemp(prefix="icsguard-opcua-"))
    # Not atexit: a process multiprocessing started (the bench server) ends without
    # running it, but with multiprocessing's own exit hook, as the main process does.
    util.Finalize(None, shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True},
                  exitpriority=0)
    paths = {}

    async def make(role: str, uri: str, use) -> None:
        paths[f"{role}_key"], paths[f"{role}_cert"] = folder / f"{role}.pem", folder / f"{role}.der"
        await setup_self_signed_certificate(paths[f"{role}_key"], paths[f"{role}_cert"], uri,
                                            "localhost", [use], {"commonName": f"icsguard {role}"})

    async def make_both() -> None:
        await make("server", SERVER_URI, ExtendedKeyUsageOID.SERVER_AUTH)
        await make("client", CLIENT_URI, ExtendedKeyUsageOID.CLIENT_AUTH)

    asyncio.run(make_both())
    return paths


def _issue(folder: Path, role: str, uri: str, use, issuer: tuple | None,
           not_before: datetime.datetime, not_after: datetime.datetime) -> tuple:
    """A key and certificate for ``role`` signed by ``issuer`` (key, certificate), or a CA
    certificate signing itself when ``issuer`` is None; written as PEM key and DER cert."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"icsguard {role}")])
    issuer_key, issuer_cert = issuer or (key, None)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after))
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    else:
        builder = (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")]), critical=False)
                   .add_extension(x509.KeyUsage(True, True, True, True, False, False, False, False, False),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([use]), critical=False))
    cert = builder.sign(issuer_key, hashes.SHA256())
    (folder / f"{role}.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    (folder / f"{role}.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return key, cert


@functools.cache
def ca_certificates() -> dict[str, Path]:
    """Server and client certificates issued by a test CA (not self-signed), and client
    certificates from the same CA that expired in 2021 and that become valid only in ten
    years: keys ``<role>_key`` and ``<role>_cert`` for the roles server, client, expired,
    not_yet_valid and ca."""
    folder = Path(tempfile.mkdtemp(prefix="icsguard-opcua-ca-"))
    util.Finalize(None, shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True},
                  exitpriority=0)
    now = datetime.datetime.now(datetime.timezone.utc)
    year = datetime.timedelta(days=365)
    ca = _issue(folder, "ca", "", None, None, now - year, now + 10 * year)
    _issue(folder, "server", SERVER_URI, ExtendedKeyUsageOID.SERVER_AUTH, ca, now - year, now + year)
    _issue(folder, "client", CLIENT_URI, ExtendedKeyUsageOID.CLIENT_AUTH, ca, now - year, now + year)
    _issue(folder, "expired", CLIENT_URI, ExtendedKeyUsageOID.CLIENT_AUTH, ca,
           datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
           datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc))
    _issue(folder, "not_yet_valid", CLIENT_URI, ExtendedKeyUsageOID.CLIENT_AUTH, ca,
           now + 10 * year, now + 11 * year)
    return {f"{role}_{kind}": folder / f"{role}.{ext}"
            for role in ("server", "client", "expired", "not_yet_valid", "ca")
            for kind, ext in (("key", "pem"), ("cert", "der"))}


# --------------------------------------------------------------------------- #
# Server
# --------------------------------------------------------------------------- #
class _Users:
    """Anonymous, or USERNAME with PASSWORD; anything else is refused (BadUserAccessDenied)."""

    def get_user(self, iserver, username=None, password=None, certificate=None) -> User | None:
        if username is None and password is None:
            return User(role=UserRole.User)
        if username == USERNAME and password == PASSWORD:
            return User(role=UserRole.User, name=username)
        return None


@uamethod
def _start(parent: ua.NodeId) -> bool:
    return True


class PeerServer:
    """An asyncua server on HOST:``port`` in its own event-loop thread.

    Offers NoSecurity and Basic256Sha256 Sign / SignAndEncrypt, anonymous and
    username tokens, and the nodes in NODE_IDS (``ca_issued``: with the certificate
    from ca_certificates rather than a self-signed one). A server that is not ``secure``
    offers NoSecurity only, like many a legacy one: with no encrypting policy to
    protect the user token, clients send their password in clear text. Use as a
    context manager or call ``stop()``.
    """

    def __init__(self, port: int = OPCUA_PORT, secure: bool = True, ca_issued: bool = False) -> None:
        certificates()  # here: it runs its own event loop, which _serve's would refuse
        self._certs = ca_certificates() if ca_issued else certificates()
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(port, secure, ready),),
                                        name=f"opcua-server-{port}", daemon=True)
        self._thread.start()
        ready.result(timeout=30)
        self.host, self.port, self.endpoint_url = HOST, port, endpoint_url(port)

    async def _serve(self, port: int, secure: bool, ready: Future) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._done = asyncio.Event()
            server = Server(user_manager=_Users())
            await server.init()
            server.set_endpoint(endpoint_url(port))
            server.set_server_name("icsguard loopback pump")
            await server.set_application_uri(SERVER_URI)
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity] + [
                ua.SecurityPolicyType.Basic256Sha256_Sign,
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt] * secure)
            server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken])
            await server.load_certificate(self._certs["server_cert"])
            await server.load_private_key(self._certs["server_key"])
            index = await server.register_namespace(NAMESPACE)
            assert index == 2, index  # NODE_IDS hard-code it
            pump = await server.nodes.objects.add_object(NODE_IDS["Pump1"], f"{index}:Pump1")
            for name, (value, variant_type) in VARIABLES.items():
                variable = await pump.add_variable(NODE_IDS[name], f"{index}:{name}", value,
                                                   variant_type)
                await variable.set_writable()
            await pump.add_method(NODE_IDS["Start"], f"{index}:Start", _start, [],
                                  [ua.VariantType.Boolean])
            await server.start()
        except Exception as exc:  # reported to the constructor's caller
            ready.set_exception(exc)
            return
        ready.set_result(None)
        await self._done.wait()
        await server.stop()

    def stop(self) -> None:
        """Close the listener and all sessions, then end the thread."""
        self._loop.call_soon_threadsafe(self._done.set)
        self._thread.join(10)

    def __enter__(self) -> PeerServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_server(port: int = OPCUA_PORT, secure: bool = True, ca_issued: bool = False) -> PeerServer:
    """A PeerServer on HOST:``port``; stop it with ``.stop()`` or a ``with`` block."""
    return PeerServer(port, secure, ca_issued)


def server_info(port: int = OPCUA_PORT, secure: bool = True) -> dict:
    """What a capture's JSON says about the server: endpoint, policies, nodes, user."""
    policies = [(SecurityPolicyNone.URI, "None")]
    if secure:
        policies += [(SecurityPolicyBasic256Sha256.URI, "Sign"), (SecurityPolicyBasic256Sha256.URI, "SignAndEncrypt")]
    return {
        "host": HOST, "port": port, "endpoint_url": endpoint_url(port),
        "application_uri": SERVER_URI, "namespace": NAMESPACE,
        "security_policies": [{"uri": policy, "mode": mode} for policy, mode in policies],
        "token_types": ["anonymous", "username"],
        "nodes": NODE_IDS,
        "variables": {name: {"initial": value, "type": variant_type.name}
                      for name, (value, variant_type) in VARIABLES.items()},
        "username": USERNAME, "password": PASSWORD,
    }


# --------------------------------------------------------------------------- #
# Client
# --------------------------------------------------------------------------- #
class _UaClient(UaClient):
    """Connects from CLIENT_HOST: asyncua's Client has no source-address option."""

    local_host = CLIENT_HOST

    async def connect_socket(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        bound = functools.partial(loop.create_connection, local_addr=(self.local_host, 0))
        with mock.patch.object(loop, "create_connection", bound):
            await super().connect_socket(host, port)
        self.sockname = self.protocol.transport.get_extra_info("sockname")


class Session:
    """One asyncua client connection that records every action it performs."""

    def __init__(self, port: int, mode: str = "None", username: str | None = None,
                 password: str | None = None, host: str = CLIENT_HOST,
                 certs: dict[str, Path] | None = None, cert: str = "client") -> None:
        """``host``: the loopback address to connect from; ``certs`` (default: the
        self-signed certificates()) and ``cert`` (its ``<cert>_key``/``<cert>_cert``
        pair) choose the client's certificate for Sign and SignAndEncrypt."""
        self.url = endpoint_url(port)
        self.client = Client(self.url)
        self.client.uaclient = _UaClient(self.client.uaclient._timeout)
        self.client.uaclient.local_host = host
        self.certs, self.cert = certs, cert
        self.client.application_uri = CLIENT_URI
        self.mode, self.username, self.password = mode, username, password
        self.transcript: list[dict] = []

    async def step(self, action: str, operation: Awaitable, node_id: str | None = None,
                   value: Any = None, result: Callable[[Any], Any] | None = None,
                   **fields) -> Any:
        """Await ``operation`` and record it; a refusal becomes the entry's ``error``."""
        entry = {"action": action, "node_id": node_id, "value": value, "error": None, **fields}
        self.transcript.append(entry)
        try:
            outcome = await operation
        except (ua.UaError, ConnectionError, asyncio.TimeoutError) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"  # e.g. BadUserAccessDenied
            return None
        if result:
            entry["value"] = result(outcome)
        return outcome

    async def connect(self) -> bool:
        """Open the channel and session; False (and an ``error``) if the server refused."""
        if self.mode != "None":
            paths = self.certs or certificates()
            await self.client.set_security(
                SecurityPolicyBasic256Sha256, paths[f"{self.cert}_cert"], paths[f"{self.cert}_key"],
                server_certificate=str(paths["server_cert"]), mode=MODES[self.mode])
        if self.username:
            self.client.set_user(self.username)
            self.client.set_password(self.password)
        entry = {
            "endpoint_url": self.url,
            "security_policy_uri": self.client.security_policy.URI,
            "security_mode": self.mode,
            "token_type": "username" if self.username else "anonymous",
            "username": self.username,
            "password": self.password,
        }
        await self.step("connect", self.client.connect(), **entry)
        sockname = getattr(self.client.uaclient, "sockname", (None, None))
        self.transcript[-1].update(client_host=sockname[0], client_port=sockname[1])
        return self.transcript[-1]["error"] is None

    async def disconnect(self) -> None:
        await self.step("disconnect", self.client.disconnect())

    def node(self, node_id: str):
        return self.client.get_node(node_id)

    async def read(self, node_id: str) -> Any:
        return await self.step("read", self.node(node_id).read_value(), node_id,
                               result=lambda value: value)

    async def write(self, node_id: str, value: Any, variant_type: ua.VariantType) -> None:
        await self.step("write", self.node(node_id).write_value(value, variant_type),
                        node_id, value)

    async def browse(self, node_id: str) -> None:
        await self.step("browse", self.node(node_id).get_children(), node_id,
                        result=lambda nodes: [node.nodeid.to_string() for node in nodes])

    async def call(self, object_id: str, method_id: str) -> None:
        method = ua.NodeId.from_string(method_id)  # a plain str would be taken as a browse path
        await self.step("call", self.node(object_id).call_method(method), method_id,
                        result=lambda value: value, object_id=object_id)


@asynccontextmanager
async def _session(port: int, **options):
    """A connected Session, disconnected on exit."""
    session = Session(port, **options)
    if await session.connect():
        try:
            yield session
        finally:
            await session.disconnect()
    else:
        yield session


def _run(scenario: Callable[..., Awaitable[list[dict]]]) -> Callable[..., list[dict]]:
    """Make an async scenario callable as ``scenario(port, **kwargs)`` like the other harnesses."""
    @functools.wraps(scenario)
    def run(port: int = OPCUA_PORT, **kwargs) -> list[dict]:
        return asyncio.run(scenario(port, **kwargs))
    return run


# --------------------------------------------------------------------------- #
# Scenarios
# --------------------------------------------------------------------------- #
class _Notifications:
    """Subscription handler that collects data-change values."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.changed = asyncio.Event()

    def datachange_notification(self, node, value, data) -> None:
        self.values.append(value)
        self.changed.set()


@_run
async def none_anonymous(port: int, notifications: int = 2) -> list[dict]:
    """Browse, read, write, call Start and subscribe to Speed, without security.

    The first notification is Speed's current value; a second (``notifications=2``)
    is provoked by writing Speed again.
    """
    ids = NODE_IDS
    async with _session(port) as s:
        await s.browse("i=85")
        await s.browse(ids["Pump1"])
        for name in VARIABLES:
            await s.read(ids[name])
        await s.write(ids["Setpoint"], 1600, ua.VariantType.Int32)
        await s.write(ids["Speed"], 1475.5, ua.VariantType.Double)
        await s.call(ids["Pump1"], ids["Start"])
        handler, interval = _Notifications(), 100
        subscription = await s.step("subscribe", s.client.create_subscription(interval, handler),
                                    publishing_interval=interval)
        s.transcript[-1]["subscription_id"] = subscription.subscription_id
        await s.step("monitor", subscription.subscribe_data_change(s.node(ids["Speed"])),
                     ids["Speed"], subscription_id=subscription.subscription_id)
        monitor = s.transcript[-1]
        await asyncio.wait_for(handler.changed.wait(), 5)
        if notifications > 1:
            handler.changed.clear()
            await s.write(ids["Speed"], 1490.0, ua.VariantType.Double)
            await asyncio.wait_for(handler.changed.wait(), 5)
        monitor["value"] = list(handler.values)
        await s.step("delete_subscription", subscription.delete())
        return s.transcript


@_run
async def read_nodes(port: int, node_ids: list[str]) -> list[dict]:
    """Read these nodes' values without security: e.g. the server's BuildInfo (i=2261..2266)."""
    async with _session(port) as s:
        for node_id in node_ids:
            await s.read(node_id)
        return s.transcript


@_run
async def none_username(port: int) -> list[dict]:
    """Username/password login over an unsecured channel, then one read."""
    async with _session(port, username=USERNAME, password=PASSWORD) as s:
        await s.read(NODE_IDS["Speed"])
        return s.transcript


@_run
async def none_plaintext_password(port: int) -> list[dict]:
    """Username login to a server offering no encrypting policy: the password crosses in
    clear text. Then a read and a write of the setpoint."""
    async with _session(port, username=USERNAME, password=PASSWORD) as s:
        await s.read(NODE_IDS["Setpoint"])
        await s.write(NODE_IDS["Setpoint"], 1550, ua.VariantType.Int32)
        return s.transcript


@_run
async def failed_login(port: int, attempts: int = 3) -> list[dict]:
    """Repeated username logins with a wrong password, each on its own connection."""
    transcript = []
    for _ in range(attempts):
        async with _session(port, username=USERNAME, password=WRONG_PASSWORD) as s:
            transcript += s.transcript
    return transcript


@_run
async def sign(port: int) -> list[dict]:
    """Basic256Sha256 Sign, anonymous: one read and one write."""
    ids = NODE_IDS
    async with _session(port, mode="Sign") as s:
        await s.read(ids["Running"])
        await s.write(ids["Running"], True, ua.VariantType.Boolean)
        return s.transcript


@_run
async def sign_and_encrypt(port: int) -> list[dict]:
    """Basic256Sha256 SignAndEncrypt with a username login, then one read."""
    async with _session(port, mode="SignAndEncrypt", username=USERNAME, password=PASSWORD) as s:
        await s.read(NODE_IDS["Setpoint"])
        return s.transcript


@_run
async def browse_enumeration(port: int, browses: int = 25) -> list[dict]:
    """An anonymous client walking the address space: ``browses`` Browse requests, breadth
    first from Objects, as a scanner enumerating nodes does."""
    async with _session(port) as s:
        queue = ["i=85"]
        while len(s.transcript) <= browses:      # the first entry is the connect
            await s.browse(queue.pop(0) if queue else "i=85")
            queue += s.transcript[-1]["value"] or []
        return s.transcript


ROGUE_HOST = "127.0.0.66"


@_run
async def rogue_write(port: int, host: str = ROGUE_HOST) -> list[dict]:
    """From ``host``, a host a site file would not name: write the setpoint and call Start."""
    async with _session(port, host=host) as s:
        await s.write(NODE_IDS["Setpoint"], 9999, ua.VariantType.Int32)
        await s.call(NODE_IDS["Pump1"], NODE_IDS["Start"])
        return s.transcript


@_run
async def ca_signed(port: int) -> list[dict]:
    """What a well-configured HMI does: CA-issued certificates (server started with
    ``ca_issued``), a username login over SignAndEncrypt, browse, read, write, call; then a
    second, Sign-only session with the same login that reads and writes."""
    certs, ids = ca_certificates(), NODE_IDS
    transcript = []
    async with _session(port, mode="SignAndEncrypt", username=USERNAME, password=PASSWORD,
                        certs=certs) as s:
        await s.browse(ids["Pump1"])
        await s.read(ids["Speed"])
        await s.write(ids["Setpoint"], 1520, ua.VariantType.Int32)
        await s.call(ids["Pump1"], ids["Start"])
        transcript += s.transcript
    async with _session(port, mode="Sign", username=USERNAME, password=PASSWORD, certs=certs) as s:
        await s.read(ids["Setpoint"])
        await s.write(ids["Setpoint"], 1500, ua.VariantType.Int32)
        transcript += s.transcript
    return transcript


@_run
async def dated_certificates(port: int) -> list[dict]:
    """Two Sign sessions whose client certificates, issued by the test CA, expired in 2021
    and become valid only in ten years (server started with ``ca_issued``); asyncua's server
    checks no validity and accepts both. Each reads Speed."""
    transcript = []
    for cert in ("expired", "not_yet_valid"):
        async with _session(port, mode="Sign", username=USERNAME, password=PASSWORD,
                            certs=ca_certificates(), cert=cert) as s:
            await s.read(NODE_IDS["Speed"])
            transcript += s.transcript
    return transcript


def _ua_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<i", len(data)) + data


def _frame(kind: bytes, body: bytes) -> bytes:
    return kind + b"F" + struct.pack("<I", 8 + len(body)) + body


def error_burst(port: int = OPCUA_PORT, attempts: int = 3, host: str = CLIENT_HOST) -> list[dict]:
    """Provoke transport errors: on each of ``attempts`` raw connections, a Hello announcing
    an 8 KiB send buffer, then an OpenSecureChannel chunk larger than that, which asyncua's
    server answers with ERR (BadRequestTooLarge) before closing the connection."""
    transcript = []
    hello = _frame(b"HEL", struct.pack("<IIIII", 0, 65536, 8192, 0, 0) + _ua_string(endpoint_url(port)))
    opn = _frame(b"OPN", struct.pack("<I", 0) + _ua_string(SecurityPolicyNone.URI)
                 + struct.pack("<ii", -1, -1) + struct.pack("<II", 1, 1) + bytes(9000))
    for _ in range(attempts):
        entry = {"action": "oversized_open", "node_id": None, "value": None, "error": None}
        transcript.append(entry)
        with socket.create_connection((HOST, port), timeout=5, source_address=(host, 0)) as sock:
            sock.sendall(hello)
            ack = sock.recv(65536)
            sock.sendall(opn)
            answer = b""
            while True:
                try:
                    data = sock.recv(65536)
                except (ConnectionError, socket.timeout):
                    break
                if not data:
                    break
                answer += data
        entry["value"] = ack[:3].decode(errors="replace")
        if answer[:3] == b"ERR":
            code, = struct.unpack_from("<I", answer, 8)
            entry["error"] = f"ERR: 0x{code:08X}"
    return transcript


# scenarios that need a server other than the default one
SERVERS = {"none_plaintext_password": {"secure": False}, "ca_signed": {"ca_issued": True},
           "dated_certificates": {"ca_issued": True}}


def flood_polling(port: int, transactions: int, connections: int = 8) -> None:
    """POLL_CYCLE as fast as asyncua goes, over concurrent anonymous sessions without security.

    Keeps no transcript, so memory stays flat however large ``transactions`` is.
    """
    share, extra = divmod(transactions, connections)

    async def poll(count: int) -> None:
        session = Session(port)
        if not await session.connect():
            raise ConnectionError(session.transcript[-1]["error"])
        client = session.client
        variables = [client.get_node(NODE_IDS[name]) for name in VARIABLES]
        setpoint, pump = client.get_node(NODE_IDS["Setpoint"]), client.get_node(NODE_IDS["Pump1"])
        try:
            for index in range(count):
                operation = POLL_CYCLE[index % len(POLL_CYCLE)]
                if operation == "read":
                    await client.read_values(variables)
                elif operation == "write":
                    await setpoint.write_value(1500 + index % 100, ua.VariantType.Int32)
                else:
                    await pump.get_children()
        finally:
            await client.disconnect()

    async def flood() -> None:
        await asyncio.gather(*(poll(share + (index < extra)) for index in range(connections)))

    asyncio.run(flood())


def capture(path: str | Path, scenario: Callable[..., list[dict]], port: int = OPCUA_PORT,
            iface: str = "lo", **scenario_kwargs) -> list[dict]:
    """Run ``scenario`` against a fresh server on ``port`` while recording ``path``."""
    certificates()  # before recording: key generation takes a while
    with start_server(port, **SERVERS.get(scenario.__name__, {})) as server, record(path, server.port, iface):
        return scenario(server.port, **scenario_kwargs)


# --------------------------------------------------------------------------- #
# Baseline scenarios: an HMI's everyday session, and departures from it
# --------------------------------------------------------------------------- #
OPERATOR_SETPOINTS = (1500, 1505, 1510, 1515, 1520)


@_run
async def hmi_polling(port: int, cycles: int = 10, interval: float = 0.05, host: str = CLIENT_HOST) -> list[dict]:
    """What an HMI does all day: every ``interval`` seconds (on a fixed schedule) read Speed
    and Setpoint; every other cycle first write the next of OPERATOR_SETPOINTS into Setpoint.
    No browsing, no method calls, no subscriptions."""
    ids = NODE_IDS
    async with _session(port, host=host) as s:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        for cycle in range(cycles):
            if cycle % 2 == 0:
                value = OPERATOR_SETPOINTS[(cycle // 2) % len(OPERATOR_SETPOINTS)]
                await s.write(ids["Setpoint"], value, ua.VariantType.Int32)
            await s.read(ids["Speed"])
            await s.read(ids["Setpoint"])
            await asyncio.sleep(max(0.0, begin + (cycle + 1) * interval - loop.time()))
        return s.transcript


@_run
async def setpoint_change(port: int, value: int, host: str = CLIENT_HOST) -> list[dict]:
    """From ``host`` (by default the HMI), write ``value`` into Setpoint and read it back."""
    async with _session(port, host=host) as s:
        await s.write(NODE_IDS["Setpoint"], value, ua.VariantType.Int32)
        await s.read(NODE_IDS["Setpoint"])
        return s.transcript


@_run
async def start_pump(port: int, host: str = CLIENT_HOST) -> list[dict]:
    """From ``host`` (by default the HMI, which never calls methods): read Speed as usual,
    then call Pump1's Start method."""
    async with _session(port, host=host) as s:
        await s.read(NODE_IDS["Speed"])
        await s.call(NODE_IDS["Pump1"], NODE_IDS["Start"])
        return s.transcript
