"""What a client gets for bad input, each at once: one JSON object per case with the error and
how long it took, then proof that the hub still answers.

  malformed-protobuf   garbage as a ListClustersRequest     -> ServiceError 400
  unknown-endpoint     <prefix>.api.<you>.clusters.nope     -> NoResponders (nobody serves it)
  wrong-inbox-prefix   a client keeping the default _INBOX  -> Refused (subscription denied)
  oversized-payload    2 MiB, over nats-server's 1 MiB      -> refused before it leaves
  large-garbage        just under max_payload, garbage      -> ServiceError 400
  hub-still-answers    clusters.list                        -> a ClusterList

    python bad_input.py
"""

import json
import time

from fleetbus_client import Fleet, FleetError, Refused, ServiceError, elapsed, main, pb


async def case(name, call):
    started = time.monotonic()
    line = {"case": name}
    try:
        reply = await call()
        line.update(ok=True, reply=str(reply)[:200])
    except ServiceError as e:
        line.update(ok=False, error="ServiceError", code=e.code, message=e.message)
    except Refused as e:
        line.update(ok=False, error="Refused", message=str(e))
    except FleetError as e:
        line.update(ok=False, error=type(e).__name__, message=str(e))
    line["seconds"] = elapsed(started)
    print(json.dumps(line), flush=True)


async def run():
    fleet = await Fleet.connect()
    try:
        clusters = fleet.api_subject("clusters", "list")
        await case("malformed-protobuf", lambda: fleet.call(clusters, RawBytes(b"\xff\xff\xff\x01"), pb.ClusterList))
        await case(
            "unknown-endpoint",
            lambda: fleet.call(fleet.api_subject("clusters", "nope"), pb.Empty(), pb.Empty),
        )
        wrong = await Fleet.connect(inbox_prefix="_INBOX")
        try:
            await case("wrong-inbox-prefix", lambda: wrong.api("clusters", "list", pb.ListClustersRequest(), pb.ClusterList))
        finally:
            await wrong.nc.close()
        limit = fleet.nc.max_payload
        await case("oversized-payload", lambda: fleet.call(clusters, RawBytes(b"\x00" * (2 * 1024 * 1024)), pb.ClusterList))
        await case("large-garbage", lambda: fleet.call(clusters, RawBytes(b"\xff" * (limit - 4096)), pb.ClusterList))
        await case("hub-still-answers", lambda: fleet.api("clusters", "list", pb.ListClustersRequest(), pb.ClusterList))
    finally:
        await fleet.close()


class RawBytes:
    """Bytes sent as they are, in place of a protobuf message."""

    def __init__(self, data):
        self.data = data

    def SerializeToString(self):
        return self.data


if __name__ == "__main__":
    main(run())
