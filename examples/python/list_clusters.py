"""List every cluster through the hub API (`clusters.list`), page by page: one JSON object per
line. Any user may call it.

    python list_clusters.py [--page-size N]
"""

import argparse
import json

from fleetbus_client import Fleet, condition_status, main, pb, to_dict


async def run(page_size):
    fleet = await Fleet.connect()
    try:
        request = pb.ListClustersRequest(limit=page_size)
        async for cluster in fleet.pages("clusters", "list", request, pb.ClusterList):
            available = next(
                (condition_status(c.status) for c in cluster.conditions if c.type == "ManagedClusterConditionAvailable"),
                None,
            )
            line = to_dict(cluster)
            line["available"] = available
            print(json.dumps(line), flush=True)
    finally:
        await fleet.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page-size", type=int, default=0, help="items per page (0: the hub's default)")
    main(run(parser.parse_args().page_size))
