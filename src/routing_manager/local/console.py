"""The local execution console: `local up` serves it at /console on its own port, beside moto.

Server-rendered HTML and a few lines of script (polling, a state's input and output on click): nothing to
build. Every page is made from what `job show` reads (routing_manager.cli.jobs), and, since this runs in the
stack's own process, each state's input and output from moto's execution history, which AWS keeps for
EXPRESS executions only in logs with IncludeExecutionData. All job-supplied text goes through html.escape.
"""

from __future__ import annotations

import html
import json
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from routing_manager import project

PREFIX = "/console"
_STATE: dict[str, Any] = {}  # the deployed stack, once local up has one


def attach(endpoint: str, stack_name: str) -> None:
    _STATE.update(endpoint=endpoint, stack=stack_name)


def wrap(moto_app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """A WSGI app: /console/... here, everything else to moto."""
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return _console(environ, start_response)
        return moto_app(environ, start_response)
    return app


def server(**kwargs: Any) -> Any:
    """moto's threaded server with the console in front (and its 50 ms stop, as the tests' server)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    class WithConsole(ThreadedMotoServer):
        def _server_entry(self) -> None:
            self._server = make_server(self._ip_address, self._port,
                                       wrap(DomainDispatcherApplication(create_backend_app)), True,
                                       request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever(poll_interval=0.05)

    return WithConsole(**kwargs)


def _console(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")[len(PREFIX):].strip("/")
    query = {k: v[0] for k, v in urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).items()}
    status, body = "200 OK", ""
    try:
        if "endpoint" not in _STATE:
            status, body = "503 Service Unavailable", _page("starting", "<p>The stack is still deploying.</p>")
        elif path == "":
            body = _executions_page(query)
        elif path.startswith("job/") and environ.get("REQUEST_METHOD") == "POST" and path.endswith("/replay"):
            job_id = urllib.parse.unquote(path[len("job/"):-len("/replay")])
            body = _replay(job_id)
        elif path.startswith("job/"):
            found = _job_page(urllib.parse.unquote(path[len("job/"):]))
            status, body = ("200 OK", found) if found else ("404 Not Found", _page("not found", "<p>No such job.</p>"))
        else:
            status, body = "404 Not Found", _page("not found", "<p>No such page.</p>")
    except Exception as exc:  # a page that fails says why, it never takes the stack down
        status, body = "500 Internal Server Error", _page("error", f"<pre>{_e(repr(exc))}</pre>")
    data = body.encode()
    start_response(status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data))),
                            ("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; "
                                                        "style-src 'unsafe-inline'")])
    return [data]


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _target() -> Any:
    import boto3

    from routing_manager.cli import jobs
    from routing_manager.local import stack as local_stack

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name=local_stack.REGION)
    client = {s: session.client(s, endpoint_url=_STATE["endpoint"]) for s in ("dynamodb", "logs", "cloudformation")}
    stack = client["cloudformation"].describe_stacks(StackName=_STATE["stack"])["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return jobs._Stack(_STATE["stack"], outputs, client["dynamodb"], client["logs"], client["cloudformation"])


STYLE = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}
.routed{color:#176117}.rejected{color:#8a5a00}.failed{color:#a33}pre{white-space:pre-wrap;max-width:70em}
svg .state rect{fill:#f6f6f6;stroke:#888}svg .taken rect{fill:#e3efff;stroke:#06c;stroke-width:3}
svg .caught rect{fill:#fff0d0;stroke:#c80;stroke-width:3}svg .failed rect{fill:#fadadd;stroke:#a33;stroke-width:3}
svg .state{cursor:pointer}svg text{font-size:11px}svg line{stroke:#999}svg line.taken{stroke:#06c;stroke-width:2.5}
"""


def _page(title: str, body: str, script: str = "") -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)} · routing-manager console</title>"
            f"<style>{STYLE}</style></head><body><p><a href='{PREFIX}'>executions</a></p>{body}"
            f"<script>{script}</script></body></html>")


def _rows(target: Any, outcome: str | None, reason: str | None, limit: int = 200) -> Iterator[dict[str, Any]]:
    import heapq

    from routing_manager.cli import jobs

    wanted = {v: k for k, v in jobs.OUTCOMES.items()}
    statuses = [wanted[outcome]] if outcome in wanted else list(jobs.OUTCOMES)
    streams = [jobs._query(target, status, None, reason or None, min(limit, 500)) for status in statuses]
    for count, record in enumerate(heapq.merge(*streams, key=lambda r: r.get("claimedAt") or "", reverse=True)):
        if count >= limit:
            return
        yield jobs._row(record)


# Polls the same page and swaps the table in: live without SSE, and with no client state to keep.
POLL = """setInterval(async()=>{const r=await fetch(location.href);if(!r.ok)return;
const d=new DOMParser().parseFromString(await r.text(),'text/html');
document.getElementById('executions').replaceWith(d.getElementById('executions'));},2000);"""


def _executions_page(query: dict[str, str]) -> str:
    target = _target()
    search = query.get("jobId", "").strip()
    if search:
        rows = [r for r in _rows(target, None, None, 10_000) if search in r["jobId"]]
    else:
        rows = list(_rows(target, query.get("outcome"), query.get("reason")))
    options = "".join(f"<option value='{o}'{' selected' if query.get('outcome') == o else ''}>{o}</option>"
                      for o in ("", "routed", "rejected", "failed", "in_progress"))
    form = (f"<form method='get' action='{PREFIX}'>outcome <select name='outcome'>{options}</select> "
            f"reason <input name='reason' value='{_e(query.get('reason', ''))}'> "
            f"jobId <input name='jobId' value='{_e(search)}'> <button>filter</button></form>")
    body = "".join(_row_html(r) for r in rows)
    table = (f"<table id='executions'><thead><tr><th>jobId</th><th>user</th><th>outcome</th><th>reason</th>"
             f"<th>provider/model</th><th>at</th></tr></thead><tbody>{body}</tbody></table>")
    return _page("executions", f"<h1>Executions</h1>{form}<p>{len(rows)} shown, newest first</p>{table}"
                               f"{_providers_panel(target)}", POLL)


def _row_html(r: dict[str, Any]) -> str:
    link = f"{PREFIX}/job/{urllib.parse.quote(r['jobId'], safe='')}"
    route = f"{r['provider']}/{r['model']}" if r["provider"] else ""
    return (f"<tr data-job='{_e(r['jobId'])}'><td><a href='{_e(link)}'>{_e(r['jobId'])}</a></td>"
            f"<td>{_e(r['userId'])}</td><td class='{_e(r['outcome'])}'>{_e(r['outcome'])}</td>"
            f"<td>{_e(r['reason'])}</td><td>{_e(route)}</td><td>{_e(r['at'])}</td></tr>")


def _providers_panel(target: Any) -> str:
    from routing_core import rollout

    from routing_manager import providers

    table_name = target.outputs.get("ProviderStateTableName")
    if not table_name:
        return ""
    items = providers.read_items(target.ddb, table_name)
    status = rollout.Pointer(items.get(rollout.POINTER_SK)).status()
    rows = "".join(f"<tr><td>{_e(sk)}</td><td>{_e(json.dumps(item, default=str))}</td></tr>"
                   for sk, item in sorted(items.items()) if sk != rollout.POINTER_SK)
    return (f"<h2>Providers</h2><p id='table-version'>routing table: version {_e(status.get('active'))} active, "
            f"shadow {_e(status.get('shadow'))}, canary {_e(status.get('canary'))}</p>"
            f"<table id='providers'><tr><th>item</th><th>state</th></tr>"
            f"{rows or '<tr><td>all available</td><td></td></tr>'}</table>")


def _state_io(arns: list[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Each execution's states with their input and output, from moto's history (this process holds it)."""
    from routing_manager.local import moto_adapters

    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for arn in arns:
        try:
            _, history = moto_adapters.read_execution(arn)
        except Exception:  # an execution moto no longer holds: the log's path is all there is
            continue
        states: dict[str, list[dict[str, Any]]] = {}
        current: dict[str, Any] | None = None
        for event in history:
            if "stateEnteredEventDetails" in event:
                d = event["stateEnteredEventDetails"]
                current = {"input": d.get("input"), "output": None}
                states.setdefault(d["name"], []).append(current)
            elif "stateExitedEventDetails" in event and current is not None:
                current["output"] = event["stateExitedEventDetails"].get("output")
        found[arn] = states
    return found


def _graph_svg(path: list[str], marks: dict[str, str]) -> str:
    """The workflow laid out as `graph` lays it out (layers from StartAt), as inline SVG: the path taken, and
    the states that failed or caught an error, marked."""
    from routing_manager import graph

    definition = graph.load(project.ASL)
    all_edges = graph.edges(definition)
    layer = graph._layers(definition, all_edges)
    rows: dict[int, list[str]] = {}
    for name in definition["States"]:
        rows.setdefault(layer[name], []).append(name)
    box_w, box_h, gap_x, gap_y = 150, 26, 165, 50
    widest = max(len(r) for r in rows.values())
    position = {name: (20 + (i + (widest - len(names)) / 2) * gap_x, 20 + depth * gap_y)
                for depth, names in rows.items() for i, name in enumerate(names)}
    taken = set(path)
    steps = set(zip(path, path[1:], strict=False))
    lines = []
    for e in all_edges:
        (x1, y1), (x2, y2) = position[e.source], position[e.target]
        cls = " class='taken'" if (e.source, e.target) in steps else ""
        dash = " stroke-dasharray='4 3'" if e.kind == "catch" else ""
        lines.append(f"<line{cls}{dash} x1='{x1 + box_w / 2:.0f}' y1='{y1 + box_h:.0f}' x2='{x2 + box_w / 2:.0f}' "
                     f"y2='{y2:.0f}'/>")
    boxes = []
    for name, (x, y) in position.items():
        kind = marks.get(name) or ("taken" if name in taken else "")
        boxes.append(f"<g class='state {kind}' data-state='{_e(name)}'><title>{_e(name)}</title>"
                     f"<rect x='{x:.0f}' y='{y:.0f}' width='{box_w}' height='{box_h}' rx='6'/>"
                     f"<text x='{x + 6:.0f}' y='{y + 17:.0f}'>{_e(name[:24])}</text></g>")
    width = 40 + widest * gap_x
    height = 40 + len(rows) * gap_y
    return (f"<svg id='graph' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}'>{''.join(lines)}{''.join(boxes)}</svg>")


CLICK = """document.querySelectorAll('#graph .state').forEach(g=>g.addEventListener('click',()=>{
const name=g.dataset.state;document.querySelectorAll('.io').forEach(p=>p.hidden=p.dataset.state!==name);
document.getElementById('selected').textContent=name;}));"""


def _explanation_rows(view: dict[str, Any], record_detail: dict[str, Any]) -> str:
    """The rules' explanation as a table: each rule, whether it matched, its candidates and why each was skipped.
    Decided again with the version that decided (the bundled table, or a published one) and every provider
    available; the live decision line (rule, reason) above says what was decided then."""
    from routing_manager import cli
    from routing_manager.cli import explain
    from routing_manager.local import stack

    if not record_detail:
        return "<p>No stored detail to explain.</p>"
    version = view.get("tableVersion") or 0
    if version:
        target = _target()
        engine = explain._published_engine(target.ddb, target.outputs["ProviderStateTableName"], int(version),
                                           stack.REGION)
    else:
        engine = cli._explain_engine(stack.REGION)
    decision = engine.decide(record_detail, None, None)
    rows = []
    for step in decision.get("explanation") or []:
        candidates = "".join(
            f"<li>{_e(c.get('provider'))}/{_e(c.get('model'))} ${_e(c.get('quoteUsd'))}"
            + (f" — {_e(c.get('skipped') or c.get('droppedBy'))}" if c.get("skipped") or c.get("droppedBy") else "")
            + "</li>" for c in step.get("candidates") or [])
        rows.append(f"<tr><td>{_e(step.get('rule'))}</td><td>{'yes' if step.get('matched') else 'no'}</td>"
                    f"<td>{_e(', '.join(step.get('filters') or []))}</td><td><ul>{candidates}</ul></td>"
                    f"<td>{_e(step.get('why'))}</td></tr>")
    return ("<table id='explanation'><tr><th>rule</th><th>matched</th><th>filters</th><th>candidates</th>"
            f"<th>why</th></tr>{''.join(rows)}</table>")


def _job_page(job_id: str) -> str | None:
    from routing_manager.cli import jobs

    target = _target()
    view = jobs._show(target, job_id)
    if view is None:
        return None
    item = target.ddb.get_item(TableName=target.jobs_table, Key={"jobId": {"S": job_id}}).get("Item") or {}
    detail = jobs._detail(jobs._plain(item))
    marks: dict[str, str] = {}
    latest = view["executions"][-1] if view["executions"] else {"states": []}
    for state in latest["states"]:
        if state.get("result") == "caught":
            marks[state["state"]] = "caught"
    definition = json.loads(project.ASL.read_text())
    for name in view["path"]:
        if definition["States"].get(name, {}).get("Type") == "Fail":
            marks[name] = "failed"
    summary_fields = ("jobId", "userId", "prompt", "outcome", "provider", "model", "providerRegion", "reason",
                      "rule", "quoteUsd", "tableVersion", "queue", "messageId", "attempts", "at")
    summary = "".join(f"<tr><th>{_e(k)}</th><td id='f-{_e(k)}'>{_e(view.get(k))}</td></tr>" for k in summary_fields)
    events = "".join(f"<li>{_e(e['detailType'])} at {_e(e['at'])}</li>" for e in view["events"]) or "<li>none</li>"
    executions = "".join(
        f"<tr><td>{_e(e['executionArn'])}</td><td>{_e(e['status'])}</td><td>{_e(e['startedAt'])}</td>"
        f"<td>{_e(' → '.join(s['state'] for s in e['states']) or e['log'])}</td></tr>" for e in view["executions"])
    io = _state_io([e["executionArn"] for e in view["executions"]][-1:])
    panes = []
    for states in io.values():
        for name, visits in states.items():
            text = "\n\n".join(f"input:\n{_pretty(v['input'])}\n\noutput:\n{_pretty(v['output'])}" for v in visits)
            panes.append(f"<pre class='io' data-state='{_e(name)}' hidden>{_e(text)}</pre>")
    replay = (f"<form method='post' action='{PREFIX}/job/{_e(urllib.parse.quote(job_id, safe=''))}/replay'>"
              f"<button id='replay'>replay</button></form>" if view["outcome"] == "failed" else "")
    body = (f"<h1>Job {_e(job_id)}</h1><table id='summary'>{summary}</table>{replay}"
            f"<h2>Path</h2><p id='path'>{_e(' → '.join(view['path']))}</p>{_graph_svg(view['path'], marks)}"
            f"<p>state: <b id='selected'>click a state</b></p>{''.join(panes)}"
            f"<h2>Decision</h2>{_explanation_rows(view, detail)}"
            f"<h2>Outcome events</h2><ul id='events'>{events}</ul>"
            f"<h2>Executions (replays)</h2><table id='runs'><tr><th>execution</th><th>status</th><th>started</th>"
            f"<th>path</th></tr>{executions}</table>")
    return _page(f"job {job_id}", body, CLICK)


def _pretty(text: Any) -> str:
    if text is None:
        return "—"
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(text)


def _replay(job_id: str) -> str:
    """The replay button: the same code as `routing-manager replay --job-id ID --yes`."""
    import subprocess
    import sys
    from pathlib import Path

    command = [str(Path(sys.executable).parent / "routing-manager"), "replay", "--job-id", job_id, "--yes",
               "--endpoint-url", _STATE["endpoint"]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    return _page(f"replay {job_id}", f"<h1>Replay {_e(job_id)}</h1><pre id='replay-output'>{_e(result.stdout)}"
                                     f"{_e(result.stderr)}</pre><p><a href='{PREFIX}/job/"
                                     f"{_e(urllib.parse.quote(job_id, safe=''))}'>back to the job</a></p>")
