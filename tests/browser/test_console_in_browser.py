"""The local execution console in headless Chromium: run jobs through `local up`, open the console, find
the execution, open it, and read what a user sees: the highlighted path, the explanation, a state's input on
click; a job whose prompt is a script stays text. Screenshots go to .local/console/ (CI artifacts)."""

from __future__ import annotations

import time

import pytest

from tests.browser.conftest import ELEMENT, Browser
from tests.local_up.conftest import LocalUp, job, until

pytestmark = pytest.mark.local_stack  # starts `local up` (make unit leaves it out)
XSS = "<script>alert(1)</script>"
ROUTED_PATH = ["CheckJobId", "DecideRoute", "CheckDecision", "ClaimJob", "RouteOrReject", "EnqueueJob",
               "MarkRouted", "EmitRouted"]


def test_an_execution_is_found_opened_and_explained(up: LocalUp, browser: Browser) -> None:
    detail = job(prompt=XSS)
    up.run(detail)
    browser.open(f"{up.endpoint}/console?jobId={detail['jobId']}")
    link = until(lambda: next(iter(browser.find_all(f"tr[data-job='{detail['jobId']}'] a")), None), 30,
                 "the execution in the console's list")
    browser.screenshot("executions")
    browser.click(link)
    # The log is written as the execution ends: the page may need a reload to show any of the path (a
    # wait for the graph without one timed out in CI when the page came before the log).
    def whole_path() -> bool:
        taken = [browser.attribute(g, "data-state") for g in browser.find_all("#graph g.taken")]
        if set(taken) == set(ROUTED_PATH):
            return True
        browser.run("location.reload()")
        time.sleep(0.2)  # a reload in flight: the next find waits for the new document
        return False
    until(whole_path, 30, "the highlighted path to be the routed path")
    assert browser.text(browser.find("#path")) == " → ".join(ROUTED_PATH)
    assert browser.text(browser.find("#f-prompt")) == XSS  # shown as text ...
    assert browser.run("return document.querySelectorAll('script').length") == 1  # ... not run as a script
    rules = [browser.text(c) for c in browser.find_all("#explanation tr td:first-child")]
    assert "short-720p-to-fal" in rules
    assert "not chosen: an earlier candidate takes the job" in browser.text(browser.find("#explanation"))
    claim = browser.find("#graph g[data-state='ClaimJob']")
    browser.run("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", {ELEMENT: claim})
    assert browser.text(browser.find("#selected")) == "ClaimJob"
    pane = browser.find("pre.io[data-state='ClaimJob']")
    assert browser.text(pane).startswith("input:")
    browser.screenshot("execution")
