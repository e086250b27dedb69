"""The local execution console that `local up` serves at /console on its own port, read over HTTP as a browser
fetches it: the executions list and its filters, a job's page (path, graph, explanation, each state's input),
the replay button, and job-supplied text that stays text."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from tests.local_up.conftest import LocalUp, job, until

XSS = "<script>alert(1)</script>"


def get(up: LocalUp, path: str = "", **query: str) -> tuple[int, str]:
    url = f"{up.endpoint}/console{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def job_path(job_id: str) -> str:
    return "/job/" + urllib.parse.quote(job_id, safe="")


def job_page(up: LocalUp, job_id: str, last_state: str) -> str:
    """The job's page once its execution's log holds the last state (the log is written as the execution ends)."""
    def shown() -> str | None:
        page = get(up, job_path(job_id))[1]
        return page if f"→ {last_state}</p>" in page else None
    result: str = until(shown, 30, f"the page of {job_id} to show its path to {last_state}")
    return result


def test_job_supplied_text_renders_as_text(up: LocalUp) -> None:
    detail = job(prompt=XSS, userId="<img src=x onerror=alert(2)>")
    up.run(detail)
    status, listing = get(up)
    assert status == 200 and detail["jobId"] in listing
    assert "&lt;img src=x onerror=alert(2)&gt;" in listing and "<img" not in listing
    page = job_page(up, detail["jobId"], "EmitRouted")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert XSS not in page and "<img" not in page  # the page's own script tags hold no job text


def test_the_executions_list_filters_by_outcome_reason_and_jobid(up: LocalUp) -> None:
    routed, rejected = job(), job(lengthSec=0)
    up.run(routed)
    reason = up.run(rejected)["rejectionReason"]
    _, only_rejected = get(up, outcome="rejected")
    assert rejected["jobId"] in only_rejected and routed["jobId"] not in only_rejected
    _, by_reason = get(up, reason=reason)
    assert rejected["jobId"] in by_reason and routed["jobId"] not in by_reason
    _, searched = get(up, jobId=routed["jobId"][-12:])
    assert routed["jobId"] in searched and rejected["jobId"] not in searched
    assert "routing table: version 0 active" in searched  # the providers panel and the active version
    assert "setInterval" in searched  # polls for new executions


def test_a_job_page_shows_the_path_on_the_graph_the_explanation_and_each_state_io(up: LocalUp) -> None:
    detail = job()
    up.run(detail)
    page = job_page(up, detail["jobId"], "EmitRouted")
    assert ("<p id='path'>CheckJobId → DecideRoute → CheckDecision → ClaimJob → RouteOrReject → EnqueueJob → "
            "MarkRouted → EmitRouted</p>") in page
    assert "<g class='state taken' data-state='EnqueueJob'>" in page
    assert "<g class='state ' data-state='MarkRejected'>" in page  # not taken
    assert "<td>short-720p-to-fal</td><td>yes</td>" in page
    assert "not chosen: an earlier candidate takes the job" in page
    assert "<pre class='io' data-state='ClaimJob' hidden>input:" in page
    assert "video.job.routed at" in page and "<button id='replay'>" not in page


def test_the_replay_button_replays_a_failed_job(up: LocalUp) -> None:
    up.cli("provider", "disable", "fal", "--reason", "incident", "--wait")
    try:
        detail = job(provider="fal")
        assert up.run(detail)["status"] == "FAILED"
        _, page = get(up, job_path(detail["jobId"]))
        assert "<button id='replay'>replay</button>" in page
    finally:
        up.cli("provider", "enable", "fal", "--wait")
    request = urllib.request.Request(f"{up.endpoint}/console{job_path(detail['jobId'])}/replay", method="POST",
                                     data=b"")
    with urllib.request.urlopen(request, timeout=120) as answer:
        assert answer.status == 200 and "replay" in answer.read().decode().lower()
    until(lambda: (up.record(detail["jobId"]) or {}).get("status") == "ROUTED", 30, "the replayed job to route")


def test_an_unknown_job_is_a_404_page(up: LocalUp) -> None:
    status, page = get(up, job_path("no-such-job"))
    assert status == 404 and "No such job." in page
