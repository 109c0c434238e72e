"""Call every read endpoint of the hub API, as the service itself describes them: the endpoints
`$SRV.INFO.fleetbus-hub` marks `read_only`, each with the request and reply message types its
metadata names. One JSON object per endpoint: the reply, or the hub's error code and message
(a user gets 403 from the admin-only ones).

    python read_endpoints.py --cluster cluster1 --msa dep --work dep-role
"""

import argparse
import json

from fleetbus_client import HUB_SERVICE, Fleet, FleetError, ServiceError, main, message_class, pb, to_dict

# Requests that need names; any other read endpoint gets an empty request of its type.
REQUESTS = {
    "token.get": lambda a: pb.MsaRef(cluster=a.cluster, name=a.msa),
    "work.get": lambda a: pb.WorkRef(cluster=a.cluster, name=a.work),
    "work.list": lambda a: pb.WorkListRequest(cluster=a.cluster),
    "msa.list": lambda a: pb.MsaListRequest(cluster=a.cluster),
    "clusters.list": lambda a: pb.ListClustersRequest(limit=100),
    "placements.get": lambda a: message_class("fleetbus.v1.ObjectRef")(name=a.placement),
    "worksets.get": lambda a: message_class("fleetbus.v1.ObjectRef")(name=a.workset),
}


async def run(args):
    fleet = await Fleet.connect()
    try:
        info = json.loads((await fleet.request(f"$SRV.INFO.{HUB_SERVICE}", b"")).data)
        for endpoint in info["endpoints"]:
            meta = endpoint.get("metadata") or {}
            if meta.get("read_only") != "true":
                continue
            tokens = endpoint["subject"].split(".")
            # <prefix>.api.*.<resource>.<verb>: the caller's own name in place of the wildcard.
            key = ".".join(tokens[3:])
            subject = ".".join(t if t != "*" else fleet.name for t in tokens)
            request_class, reply_class = message_class(meta["request"]), message_class(meta["reply"])
            request = REQUESTS[key](args) if key in REQUESTS else request_class()
            assert type(request).DESCRIPTOR.full_name == meta["request"], (key, meta["request"])
            line = {"endpoint": key, "subject": subject, "request": meta["request"], "reply": meta["reply"]}
            try:
                reply = await fleet.call(subject, request, reply_class)
                line.update(ok=True, body=to_dict(reply))
            except ServiceError as e:
                line.update(ok=False, code=e.code, error=e.message)
            except FleetError as e:
                line.update(ok=False, code=None, error=str(e))
            print(json.dumps(line), flush=True)
    finally:
        await fleet.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", default="")
    parser.add_argument("--msa", default="")
    parser.add_argument("--work", default="")
    parser.add_argument("--placement", default="")
    parser.add_argument("--workset", default="")
    main(run(parser.parse_args()))
