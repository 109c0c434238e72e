"""Follow the audit stream and write each event as one JSON line (stdout, or appended to
--out). Needs an auditor identity (`fleetbus certs auditor NAME`).

Without --durable it reads through an ordered consumer of its own: from the oldest event kept
(or --since-ms), and nothing is remembered when it stops. With --durable NAME it asks the hub
for its durable subscription NAME (`durable.open`) and acknowledges every event once written:
stopped, it misses nothing; started again, it goes on after the last acknowledged event.

    python audit_subscriber.py [--durable siem] [--filter fleet.audit.proxy.*] [--idle 2] [--out events.jsonl]
"""

import argparse
import asyncio
import json
import signal
import sys

import nats.js.api as js_api
from fleetbus_client import Fleet, audit, main, to_dict


def json_line(msg):
    headers = msg.headers or {}
    event = audit.AuditEvent()
    event.ParseFromString(msg.data)
    return {
        "id": headers.get("ce-id"),
        "type": headers.get("ce-type"),
        "source": headers.get("ce-source"),
        "time": headers.get("ce-time"),
        "subject": msg.subject,
        "seq": msg.metadata.sequence.stream,
        "event": to_dict(event),
    }


async def subscribe(fleet, js, args, on_message, state):
    stream = f"{fleet.prefix}-audit"
    audit_filter = args.filter or f"{fleet.prefix}.audit.>"
    if not args.durable:
        start = {"deliver_policy": js_api.DeliverPolicy.ALL}
        if args.since_ms:
            start = {"deliver_policy": js_api.DeliverPolicy.BY_START_TIME, "opt_start_time": args.since_ms}
        config = js_api.ConsumerConfig(**start)
        # `stream=` spares the stream lookup by subject, which auditors may not do.
        return await fleet.refusing(
            js.subscribe(audit_filter, stream=stream, ordered_consumer=True, config=config, cb=on_message)
        )
    request = audit.OpenDurableRequest(name=args.durable, filter=args.filter, start_ms=args.since_ms)
    durable = await fleet.call(fleet.auditor_subject("durable", "open"), request, audit.AuditDurable)
    state["consumer"] = durable.consumer
    state["pending"] = durable.pending
    config = js_api.ConsumerConfig(
        durable_name=durable.consumer,
        deliver_subject=durable.deliver_subject,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        flow_control=True,
        idle_heartbeat=durable.heartbeat_ms / 1000,
    )
    sub = await js.subscribe_bind(durable.stream, config, durable.consumer, cb=on_message, manual_ack=True)
    print(
        f"durable {durable.name}: {'created' if durable.created else 'resumed'}, "
        f"{durable.pending} pending, {durable.ack_pending} unacknowledged",
        file=sys.stderr,
        flush=True,
    )
    return sub


async def run(args):
    fleet = await Fleet.connect()
    js = fleet.nc.jetstream()
    out = open(args.out, "a", encoding="utf-8") if args.out else sys.stdout
    stop = asyncio.Event()
    activity = asyncio.Event()
    written = 0
    # The durable's consumer name, and how many events were waiting when it was opened.
    state = {"consumer": None, "pending": 0}

    async def on_message(msg):
        nonlocal written
        consumer = state["consumer"]
        # Only our own consumer's deliveries: others could point a consumer at our inbox, but
        # nobody else knows our durable's consumer name, which every reply subject carries.
        if consumer and msg.metadata.consumer != consumer:
            return
        state["pending"] -= 1
        out.write(json.dumps(json_line(msg)) + "\n")
        out.flush()
        written += 1
        if consumer:
            await msg.ack_sync()  # the server confirms: a restart resumes after this event
        activity.set()
        if args.max and written >= args.max:
            stop.set()

    loop = asyncio.get_running_loop()
    def on_signal():
        stop.set()
        activity.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        sub = await subscribe(fleet, js, args, on_message, state)
        while not stop.is_set():
            activity.clear()
            # --idle counts only once the events waiting at the start have arrived.
            idle = args.idle and (max(args.idle, 10) if state["pending"] > 0 else args.idle)
            try:
                await asyncio.wait_for(activity.wait(), timeout=idle or None)
            except asyncio.TimeoutError:
                break
        await sub.unsubscribe()
    finally:
        await fleet.close()
        if out is not sys.stdout:
            out.close()
    print(f"{written} events", file=sys.stderr, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durable", default="", help="name of your durable subscription")
    parser.add_argument("--filter", default="", help="subject filter under <prefix>.audit. (default: all)")
    parser.add_argument("--since-ms", type=int, default=0, help="start at this Unix time (ms); default: the oldest event")
    parser.add_argument("--idle", type=float, default=0, help="stop after this many seconds without an event (0: never)")
    parser.add_argument("--max", type=int, default=0, help="stop after this many events (0: never)")
    parser.add_argument("--out", default="", help="append JSON lines to this file instead of stdout")
    main(run(parser.parse_args()))
