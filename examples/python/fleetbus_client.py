"""Talk to a fleetbus hub from Python with nothing but nats-py and protobuf classes compiled
from schema/proto (the contract). See docs/nats-clients.md.

Configuration comes from the same environment variables as the fleetbus CLI:

  FLEETBUS_NATS_URL        tls://host:4222 (comma-separated for a NATS cluster)
  FLEETBUS_CA              the fleet CA certificate (PEM)
  FLEETBUS_CERT, _KEY      your certificate and key (PEM), issued by `fleetbus certs ...`
  FLEETBUS_IDENTITY        the identity in that certificate: user:alice, auditor:audit, ...
  FLEETBUS_SUBJECT_PREFIX  the fleet's subject prefix (default: fleet)

The one thing a NATS client must get right: nats-server lets an identity subscribe only to its
own inbox, `_INBOX.<prefix>.<kind>.<name>.>`. A client that keeps its library's default inbox
(`_INBOX.>`) cannot receive any reply; its subscription is refused and every request would
time out. `connect()` sets the inbox prefix and turns such refusals into errors at once.
"""

import asyncio
import atexit
import importlib
import os
import shutil
import ssl
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.errors import MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

HUB_SERVICE = "fleetbus-hub"
SERVICE_ERROR = "Nats-Service-Error"
SERVICE_ERROR_CODE = "Nats-Service-Error-Code"


def _compile_protos():
    """Compiles schema/proto with grpcio-tools' protoc into a temporary folder."""
    from grpc_tools import protoc

    proto_root = Path(os.environ.get("FLEETBUS_PROTO", Path(__file__).resolve().parents[2] / "schema" / "proto"))
    out = tempfile.mkdtemp(prefix="fleetbus-proto-")
    atexit.register(shutil.rmtree, out, True)
    files = sorted(str(p) for p in (proto_root / "fleetbus" / "v1").glob("*.proto"))
    args = ["protoc", f"-I{proto_root}", f"-I{Path(protoc.__file__).parent / '_proto'}", f"--python_out={out}", *files]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {proto_root}")
    sys.path.insert(0, out)
    # Every generated module, so every message of the contract is in the descriptor pool.
    for file in files:
        importlib.import_module(f"fleetbus.v1.{Path(file).stem}_pb2")


_compile_protos()
from fleetbus.v1 import api_pb2, audit_pb2, cluster_pb2, msa_pb2, work_pb2  # noqa: E402,F401
from google.protobuf import descriptor_pool, json_format, message_factory  # noqa: E402

pb = api_pb2
audit = audit_pb2


class FleetError(Exception):
    """A call that did not produce a reply."""


class ServiceError(FleetError):
    """The hub refused or failed: `Nats-Service-Error-Code` and `Nats-Service-Error`."""

    def __init__(self, code, message):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class Refused(FleetError):
    """nats-server refused a publish or subscription (no permission), in its own words."""


class NoResponders(FleetError):
    """Nobody serves the subject: an unknown endpoint, or no hub running."""


def message_class(full_name):
    """The protobuf class of a fully qualified message name (`fleetbus.v1.ClusterList`)."""
    descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    return message_factory.GetMessageClass(descriptor)


def to_dict(msg):
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def condition_status(value):
    """`CONDITION_STATUS_TRUE` -> `True`, as Kubernetes writes it."""
    return cluster_pb2.ConditionStatus.Name(value).removeprefix("CONDITION_STATUS_").capitalize()


def tls_context(env):
    ctx = ssl.create_default_context(cafile=env["FLEETBUS_CA"])
    ctx.load_cert_chain(env["FLEETBUS_CERT"], env["FLEETBUS_KEY"])
    return ctx


class Fleet:
    """One connection as one identity."""

    def __init__(self, nc, kind, name, prefix):
        self.nc = nc
        self.kind = kind
        self.name = name
        self.prefix = prefix
        self._waiters = set()

    @classmethod
    async def connect(cls, env=None, inbox_prefix=None):
        """Connects as FLEETBUS_IDENTITY. `inbox_prefix` overrides the identity's inbox (only
        to show what goes wrong without it)."""
        env = os.environ if env is None else env
        kind, _, name = env["FLEETBUS_IDENTITY"].partition(":")
        prefix = env.get("FLEETBUS_SUBJECT_PREFIX", "fleet")
        inbox = f"_INBOX.{prefix}.{kind}.{name}" if name else f"_INBOX.{prefix}.{kind}"
        fleet = cls(None, kind, name, prefix)

        async def on_error(e):
            if "permissions violation" in str(e).lower():
                for waiter in list(fleet._waiters):
                    if not waiter.done():
                        waiter.set_exception(Refused(str(e)))

        fleet.nc = await nats.connect(
            servers=[u.strip() for u in env["FLEETBUS_NATS_URL"].split(",") if u.strip()],
            tls=tls_context(env),
            inbox_prefix=inbox if inbox_prefix is None else inbox_prefix,
            name=f"fleetbus python {kind}:{name}",
            error_cb=on_error,
            max_reconnect_attempts=2,
        )
        return fleet

    async def close(self):
        await self.nc.drain()

    def api_subject(self, resource, verb):
        """A user's hub API subject: `<prefix>.api.<user>.<resource>.<verb>`."""
        return f"{self.prefix}.api.{self.name}.{resource}.{verb}"

    def auditor_subject(self, resource, verb):
        """An auditor's hub subject: `<prefix>.auditors.<auditor>.<resource>.<verb>`."""
        return f"{self.prefix}.auditors.{self.name}.{resource}.{verb}"

    async def refusing(self, awaitable):
        """Awaits `awaitable`, failing at once with `Refused` if nats-server refuses anything
        meanwhile (requests here are one at a time, so any refusal is this one's)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if waiter in done:
                task.cancel()
                waiter.result()
            return task.result()
        finally:
            self._waiters.discard(waiter)
            if not waiter.done():
                waiter.cancel()

    async def request(self, subject, payload, timeout=5.0):
        """A raw request: the reply message, or `Refused` / `NoResponders` / `FleetError`."""
        try:
            return await self.refusing(self.nc.request(subject, payload, timeout=timeout))
        except NoRespondersError:
            raise NoResponders(f"no responder on {subject}") from None
        except NatsTimeout:
            raise FleetError(f"no answer on {subject} within {timeout}s") from None
        except MaxPayloadError:
            raise FleetError(f"{len(payload)} bytes exceed the server's max_payload ({self.nc.max_payload})") from None

    async def call(self, subject, request, reply_class, timeout=5.0):
        """Sends a protobuf `request`, returns a `reply_class`, raises `ServiceError` with the
        hub's code and message."""
        msg = await self.request(subject, request.SerializeToString(), timeout)
        headers = msg.headers or {}
        if SERVICE_ERROR in headers or SERVICE_ERROR_CODE in headers:
            raise ServiceError(int(headers.get(SERVICE_ERROR_CODE, "500")), headers.get(SERVICE_ERROR, ""))
        reply = reply_class()
        reply.ParseFromString(msg.data)
        return reply

    async def api(self, resource, verb, request, reply_class):
        return await self.call(self.api_subject(resource, verb), request, reply_class)

    async def pages(self, resource, verb, request, reply_class):
        """Every item of a paged list: ask again with `after = next` until `next` is empty."""
        while True:
            page = await self.api(resource, verb, request, reply_class)
            for item in page.items:
                yield item
            if not page.next:
                return
            request.after = page.next

    async def gather(self, subject, payload=b"", wait=0.5):
        """Every answer to one request within `wait` seconds (discovery asks all instances)."""
        inbox = self.nc.new_inbox()
        answers = []

        async def collect(msg):
            answers.append(msg)

        sub = await self.nc.subscribe(inbox, cb=collect)
        try:

            async def publish_and_wait():
                await self.nc.publish(subject, payload, reply=inbox)
                await self.nc.flush()
                await asyncio.sleep(wait)

            await self.refusing(publish_and_wait())
        finally:
            await sub.unsubscribe()
        return answers


def main(coroutine):
    """Runs an example: one line on stderr and exit 1 on a fleet error."""
    try:
        return asyncio.run(coroutine)
    except FleetError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def elapsed(started):
    return round(time.monotonic() - started, 3)
