"""The console's executions page over 1,000 jobs (issue 27: it loads in <= 1 s), measured against
`routing-manager local up` as a user runs it: a process of its own, jobs put with boto3, the page fetched
over HTTP. A figure, never a timed test.

    python bench/console_page.py [--jobs 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("routing-manager")


def _ended(ddb: Any, table: str) -> int:
    """Jobs the workflow ended (routed, rejected or failed): a Count scan, fine for a bench of 1,000."""
    pages = ddb.get_paginator("scan").paginate(
        TableName=table, Select="COUNT", FilterExpression="#s IN (:r, :j, :f)",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":r": {"S": "ROUTED"}, ":j": {"S": "REJECTED"}, ":f": {"S": "FAILED"}})
    return sum(page["Count"] for page in pages)


def measure(jobs: int = 1000, runs: int = 5, timeout: float = 600.0) -> dict[str, float]:
    import boto3

    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    up = subprocess.Popen([str(CLI), "local", "up", "--port", "0"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert up.stdout is not None
        ready = json.loads(up.stdout.readline() or "{}")
        if "consoleUrl" not in ready:
            raise SystemExit(f"local up did not start (exit {up.poll()})")
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name=ready["region"])
        events = session.client("events", endpoint_url=ready["endpoint"])
        ddb = session.client("dynamodb", endpoint_url=ready["endpoint"])
        details = [{"jobId": f"console-{uuid.uuid4()}", "userId": f"user-{n % 7}", "prompt": "p", "lengthSec": 8,
                    "resolution": "720p"} for n in range(jobs)]
        started = time.monotonic()
        for first in range(0, jobs, 10):
            entries = [{"Source": "frontend.api", "DetailType": "video.job.submitted", "Detail": json.dumps(d)}
                       for d in details[first:first + 10]]
            assert events.put_events(Entries=entries)["FailedEntryCount"] == 0
        table = ready["outputs"]["JobsTableName"]
        while (ended := _ended(ddb, table)) < jobs:
            if time.monotonic() - started > timeout:
                raise SystemExit(f"only {ended} of {jobs} jobs ended in {timeout:.0f} s")
            print(f"console page: {ended}/{jobs} jobs ended", file=sys.stderr, flush=True)
            time.sleep(2)  # a bench's progress poll, not a test's wait
        routed_in = time.monotonic() - started
        timings, size = [], 0
        for _ in range(runs):
            start = time.perf_counter()
            with urllib.request.urlopen(ready["consoleUrl"], timeout=30) as response:
                size = len(response.read())
            timings.append(time.perf_counter() - start)
        return {"console_page_jobs": jobs, "console_page_s": statistics.median(timings),
                "console_page_kb": size / 1024, "console_page_jobs_ended_in_s": routed_in}
    finally:
        up.terminate()
        up.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(measure(args.jobs, args.runs)))


if __name__ == "__main__":
    main()
