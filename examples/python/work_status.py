"""Read one ManifestWork's status through the hub API (`work.get`, admin): its generation, what
the cluster applied and each manifest's conditions, as one JSON object.

    python work_status.py --cluster cluster1 dep-role
"""

import argparse
import json

from fleetbus_client import Fleet, condition_status, main, pb, to_dict, work_pb2


async def run(cluster, name):
    fleet = await Fleet.connect()
    try:
        work = await fleet.api("work", "get", pb.WorkRef(cluster=cluster, name=name), work_pb2.ManifestWork)
        status = work.status
        print(
            json.dumps(
                {
                    "cluster": work.cluster,
                    "name": work.name,
                    "generation": work.generation,
                    "observed_generation": status.observed_generation,
                    "conditions": {c.type: condition_status(c.status) for c in status.conditions},
                    "status": to_dict(status),
                }
            ),
            flush=True,
        )
    finally:
        await fleet.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", required=True)
    parser.add_argument("name")
    args = parser.parse_args()
    main(run(args.cluster, args.name))
