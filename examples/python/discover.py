"""NATS micro discovery of the hub (what `nats micro ls|info|stats` does): PING, INFO and STATS,
each to all services (`$SRV.PING`), to the hub's instances (`$SRV.PING.fleetbus-hub`) and to
one instance (`$SRV.PING.fleetbus-hub.<id>`). One JSON object per request: the answers, or
nats-server's refusal (admins may use all three verbs, users and auditors PING and INFO,
spokes none). INFO answers are checked against the contract: every request and reply type
the metadata names must exist in schema/proto.

    python discover.py
"""

import json
import time

from fleetbus_client import HUB_SERVICE, Fleet, Refused, elapsed, main, message_class

VERBS = ["PING", "INFO", "STATS"]


def unknown_types(info):
    names = [v for e in info.get("endpoints", []) for k, v in (e.get("metadata") or {}).items() if k in ("request", "reply")]
    missing = []
    for name in names:
        try:
            message_class(name)
        except KeyError:
            missing.append(name)
    return missing


async def run():
    fleet = await Fleet.connect()
    instance = None
    try:
        for verb in VERBS:
            for target in ["", f".{HUB_SERVICE}", "instance"]:
                subject = f"$SRV.{verb}{target}"
                if target == "instance":
                    if instance is None:
                        continue
                    subject = f"$SRV.{verb}.{HUB_SERVICE}.{instance}"
                started = time.monotonic()
                line = {"verb": verb, "subject": subject}
                try:
                    answers = [json.loads(m.data) for m in await fleet.gather(subject)]
                    hub = [a for a in answers if a.get("name") == HUB_SERVICE]
                    if hub and instance is None:
                        instance = hub[0]["id"]
                    line.update(ok=True, answers=hub)
                    if verb == "INFO":
                        line["unknown_types"] = sorted({t for a in hub for t in unknown_types(a)})
                except Refused as e:
                    line.update(ok=False, refused=str(e))
                line["seconds"] = elapsed(started)
                print(json.dumps(line), flush=True)
    finally:
        await fleet.close()


if __name__ == "__main__":
    main(run())
