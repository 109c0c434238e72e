"""Python's own HTTP client through `fleetbus proxy serve`, as a user's script would use it.

    http_through_proxy.py URL CA_FILE TOKEN LIST_PATH SHA256 CLIENTS ROUNDS GET_PATH

CLIENTS threads each keep one connection alive (http.client, no fleetbus code). Every third
client reads 1 MB of the LIST and hangs up; the others GET the LIST ROUNDS times on their one
connection and compare each body's SHA-256 with the one read directly from the apiserver.
Then one connection GETs GET_PATH 200 times and reports the median latency (printed, not
judged: timing stays out of pass/fail tests). Prints one JSON object per line.
"""

import hashlib
import http.client
import json
import ssl
import sys
import threading
import time
import urllib.parse


def connect(url, ca):
    parsed = urllib.parse.urlsplit(url)
    context = ssl.create_default_context(cafile=ca)
    return http.client.HTTPSConnection(parsed.hostname, parsed.port, context=context, timeout=120)


def client(i, url, ca, headers, path, expected, rounds, results):
    result = {"client": i, "whole": 0, "wrong": [], "errors": []}
    conn = connect(url, ca)
    try:
        if i % 3 == 0:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read(1_000_000)
            conn.close()
            result["hung_up"] = True
            return
        for _ in range(rounds):
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            digest = hashlib.sha256(body).hexdigest()
            if response.status == 200 and digest == expected:
                result["whole"] += 1
            else:
                result["wrong"].append({"status": response.status, "bytes": len(body)})
    except Exception as e:  # any failure is a finding: report it, never hide it
        result["errors"].append(f"{type(e).__name__}: {e}")
    finally:
        conn.close()
        results.append(result)


def main():
    url, ca, token, path, expected, clients, rounds, get_path = sys.argv[1:9]
    clients, rounds = int(clients), int(rounds)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    results = []
    threads = [
        threading.Thread(target=client, args=(i, url, ca, headers, path, expected, rounds, results))
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in sorted(results, key=lambda r: r["client"]):
        print(json.dumps(r))

    conn = connect(url, ca)
    times = []
    for _ in range(200):
        started = time.perf_counter()
        conn.request("GET", get_path, headers=headers)
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - started)
        if response.status != 200:
            print(json.dumps({"get_status": response.status}))
            return
    conn.close()
    times.sort()
    print(json.dumps({"get_p50_ms": round(times[len(times) // 2] * 1000, 3)}))


if __name__ == "__main__":
    main()
