"""The console in a real headless Chromium against a real `turnout serve`: sign in, charts
after traffic, approve and abort rollouts, roll back from the history, a viewer without
buttons, a forged change refused, the page live through a server restart, and no errors in
the browser's console. Screenshots of each page go to the test's temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import skops.io as sio
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.console.browser import console_errors, element, eventually, start_chromium, text_of
from tests.fixtures.models import breast_cancer, sklearn_pipeline
from tests.fixtures.server import LiveServer
from tests.fixtures.traffic import Traffic
from turnout.client import Client

pytestmark = [pytest.mark.server, pytest.mark.browser, pytest.mark.slow]

WAITING_PLAN: dict[str, Any] = {
    "warmup": None,
    "challenge": None,
    "approve": True,
    "bake": {"duration_s": 1, "check_interval_s": 0.5, "mirror_previous": 0},
}


class Site:
    """The live server, its tokens, and a browser signed in as one of them."""

    def __init__(self, server: LiveServer, driver: webdriver.Chrome, shots: Path) -> None:
        self.server, self.driver, self.shots = server, driver, shots
        self.tokens: dict[str, str] = {}
        self.expected_errors: tuple[str, ...] = ()

    def admin(self) -> Client:
        return self.server.client()

    def sign_in(self, name: str) -> None:
        self.driver.get(f"{self.server.url}/ui/sign-in")  # no page polls once its cookie goes
        self.driver.delete_all_cookies()
        self.driver.get(f"{self.server.url}/ui/")
        field = element(self.driver, "input#token")
        field.send_keys(self.tokens[name])
        self.driver.find_element(By.CSS_SELECTOR, "button#sign-in").click()
        eventually(lambda: name in text_of(self.driver, "#who"), f"{name} not signed in")

    def open(self, fragment: str) -> None:
        self.driver.get(f"{self.server.url}/ui/#{fragment}")

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(self.shots / f"{name}.png"))

    def refreshes(self) -> int:
        """How many times the page has refreshed its data."""
        body = self.driver.find_element(By.TAG_NAME, "body")
        return int(body.get_attribute("data-refreshes") or 0)

    def confirm(self) -> None:
        element(self.driver, "dialog#confirm[open] #confirm-ok").click()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("console") / "home"
    server = LiveServer(  # two workers: a session must hold whichever one answers
        home, workers=2, env={"TURNOUT_CONTROLLER_INTERVAL_MS": "300"}
    ).start()
    model_dir = tmp_path_factory.mktemp("models")
    driver = None
    try:
        with server.client() as admin:
            for version, c in ((1, 1.0), (2, 0.5)):
                path = model_dir / f"v{version}.skops"
                sio.dump(sklearn_pipeline(c), path)
                admin.register("churn", path, flavor="sklearn", metrics={"accuracy": 0.9 + c / 100})
            for name in ("churn-prod", "churn-canary", "churn-viewer"):
                admin.create_deployment(name, model="churn", version=1)
            tokens = {
                name: admin.create_token(name, role)["token"]
                for name, role in (("ops", "deployer"), ("reader", "viewer"))
            }
        driver = start_chromium(tmp_path_factory.mktemp("chromium"))
        built = Site(server, driver, tmp_path_factory.mktemp("screenshots"))
        built.tokens = tokens
        yield built
    finally:
        if driver is not None:
            driver.quit()
        server.stop()


@pytest.fixture(autouse=True)
def no_console_errors(site: Site) -> Iterator[None]:
    console_errors(site.driver)  # what earlier tests left
    site.expected_errors = ()
    yield
    assert console_errors(site.driver, expected=site.expected_errors) == []


UNLABELLED = """return [...document.querySelectorAll('input, select, button, textarea')]
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                   && !e.textContent.trim())
    .map((e) => e.outerHTML);"""


def rows() -> list[list[float]]:
    features, _ = breast_cancer()
    return features.head(20).to_numpy().tolist()


def test_sign_in_shows_every_deployment(site: Site) -> None:
    site.driver.get(f"{site.server.url}/ui/")
    element(site.driver, "input#token")
    assert site.driver.current_url.endswith("/ui/sign-in")
    site.sign_in("ops")
    table = element(site.driver, "table#deployments")
    eventually(lambda: "churn-prod" in table.text, "churn-prod not listed")
    eventually(lambda: table.text.count("closed") == 3, "no live numbers")  # breakers
    assert "3 deployments" in element(site.driver, "#count").text
    cookie = site.driver.get_cookie("turnout_session")
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert site.driver.execute_script("return document.cookie") == ""
    assert site.driver.execute_script(UNLABELLED) == []
    site.shot("overview")
    search = element(site.driver, "input#filter")  # filtered by the server, by name prefix
    search.send_keys("churn-p", Keys.ENTER)
    eventually(lambda: "of 1 deployment " in text_of(site.driver, "#count"), "no filter")
    assert "churn-canary" not in element(site.driver, "table#deployments").text


def test_a_deployment_chart_after_traffic(site: Site) -> None:
    site.sign_in("ops")
    site.open("/deployments/churn-prod")
    element(site.driver, "#split .split")
    with Traffic(site.server.url, "churn-prod", rows()) as traffic:
        element(site.driver, "#chart-requests .uplot canvas")
        eventually(lambda: traffic.sent > 0, "no traffic sent")
    legend = element(site.driver, "#chart-requests .u-legend").text
    assert "v1 champion" in legend
    assert site.driver.execute_script(UNLABELLED) == []  # every control says what it is
    eventually(lambda: "v1 champion" in text_of(site.driver, "#window-table"), "no window numbers")
    site.shot("deployment")


def test_approve_a_waiting_rollout_and_see_it_promote(site: Site) -> None:
    with site.admin() as admin:  # started by admin, so ops may approve (separation of duty)
        admin.start_rollout("churn-prod", version=2, plan=WAITING_PLAN)
    site.sign_in("ops")
    site.open("/deployments/churn-prod")
    element(site.driver, "button#approve").click()
    site.confirm()
    eventually(lambda: "succeeded" in text_of(site.driver, "#rollout-state"), "no promotion")
    eventually(lambda: "v2" in text_of(site.driver, "#split"), "v2 is not champion")
    with site.admin() as admin:
        audit = httpx.get(
            f"{site.server.url}/api/v1/audit?action=rollout.approve",
            headers={"authorization": f"Bearer {site.server.token}"},
        ).json()["entries"]
        assert audit[0]["actor"] == "ops"
        assert admin.show_deployment("churn-prod")["champion"] == 2
    site.shot("rollout-promoted")


def test_abort_a_rollout(site: Site) -> None:
    with site.admin() as admin:
        admin.start_rollout("churn-canary", version=2, plan=WAITING_PLAN)
    site.sign_in("ops")
    site.open("/deployments/churn-canary")
    element(site.driver, "button#abort").click()
    site.confirm()
    eventually(lambda: "aborted" in text_of(site.driver, "#rollout-state"), "not aborted")
    assert site.driver.find_elements(By.CSS_SELECTOR, "button#approve") == []
    with site.admin() as admin:
        assert admin.rollout_status("churn-canary")["state"] == "aborted"
    site.shot("rollout-aborted")


def test_roll_back_from_the_history(site: Site) -> None:
    with site.admin() as admin:
        before = admin.show_deployment("churn-prod")["revision"]
    site.sign_in("ops")
    site.open("/deployments/churn-prod")
    button = element(site.driver, "button[data-rollback='1']")
    site.driver.execute_script("arguments[0].focus()", button)
    refreshes = site.refreshes()
    eventually(lambda: site.refreshes() >= refreshes + 2, "no refresh")  # then focus is kept
    assert site.driver.switch_to.active_element == button
    button.send_keys(Keys.ENTER)  # by keyboard: the dialog opens on Cancel, Tab to Confirm
    element(site.driver, "dialog#confirm[open]")
    assert site.driver.switch_to.active_element.get_attribute("id") == "confirm-cancel"
    site.driver.switch_to.active_element.send_keys(Keys.TAB)
    site.driver.switch_to.active_element.send_keys(Keys.ENTER)
    eventually(
        lambda: text_of(site.driver, "#active-revision") == str(before + 1), "no new revision"
    )
    eventually(lambda: "Rolled back" in text_of(site.driver, "#history-message"), "no message")
    with site.admin() as admin:
        shown = admin.show_deployment("churn-prod")
        assert shown["champion"] == 1
        assert admin.history("churn-prod")[-1]["created_by"] == "ops"
    site.shot("rolled-back")


def test_a_viewer_sees_no_action_buttons(site: Site) -> None:
    with site.admin() as admin:
        admin.start_rollout("churn-viewer", version=2, plan=WAITING_PLAN)
    site.sign_in("reader")
    site.open("/deployments/churn-viewer")
    eventually(
        lambda: "waiting approval" in text_of(site.driver, "#rollout-state"), "no waiting rollout"
    )
    element(site.driver, "table#history")
    buttons = site.driver.find_elements(
        By.CSS_SELECTOR, "button#approve, button#abort, button[data-rollback]"
    )
    assert buttons == []
    site.shot("viewer")
    site.open("/?prefix=churn-viewer")  # the overview shows the waiting rollout too
    eventually(
        lambda: "waiting for approval" in text_of(site.driver, "table#deployments"), "no badge"
    )


def test_models_and_jobs_pages(site: Site) -> None:
    site.sign_in("reader")
    site.open("/models")
    element(site.driver, "table#models a[href='#/models/churn']").click()
    versions = element(site.driver, "table#versions")
    eventually(lambda: "v2" in versions.text and "sklearn" in versions.text, "no versions")
    assert "accuracy" in versions.text
    site.shot("model")
    site.open("/jobs")
    eventually(lambda: "No jobs" in text_of(site.driver, "table#jobs"), "no jobs table")


def test_the_view_code(site: Site) -> None:
    """The pages' pure functions, run as the browser runs them."""
    site.sign_in("reader")
    element(site.driver, "table#deployments")
    found = site.driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        Promise.all([import('/ui/static/js/deployment.js'), import('/ui/static/js/overview.js'),
                     import('/ui/static/js/rollout.js')])
          .then(([d, o, r]) => {
            const look = {step: 'challenge:10', verdicts: {'challenge:10': {
              at: '2026-12-07T12:00:00+00:00', evidence: {alpha: 0.05,
              test: {effect: 0.02, ci_low: -0.01, ci_high: 0.05, p_value: 0.2}}}}};
            const before = {t: 0, traffic: [{version: 1, role: 'champion', requests: 10,
              errors: 0, latency_p50_ms: 1, latency_p99_ms: 5}]};
            const after = {t: 2000, traffic: [
              {version: 1, role: 'champion', requests: 30, errors: 2, latency_p50_ms: 1,
               latency_p99_ms: 6},
              {version: 1, role: 'fallback', requests: 4, errors: 0, latency_p50_ms: null,
               latency_p99_ms: null}]};
            done({
              rates: d.rates(before, after),
              summary: o.summarize([...after.traffic,
                {version: 2, role: 'shadow', requests: 99, errors: 9, latency_p99_ms: 90}]),
              split: o.splitBar({champion: 1, challengers: {'2': 25}}).getAttribute('aria-label'),
              accuracy: o.championAccuracy({groups: [{role: 'challenger', accuracy: 0.5},
                                                     {role: 'champion', accuracy: 0.9}]}),
              none: o.championAccuracy({groups: [{role: 'champion', accuracy: null}]}),
              look: r.testLook(look),
              noLook: r.testLook({...look, step: 'bake'}),
              graded: d.accuracyOf({groups: [{version: 2, role: 'challenger', performance:
                {accuracy: {value: 0.5, ci_low: 0.25, ci_high: 0.75}}},
                {version: 1, role: 'champion', performance: null}]}),
            });
          }, (e) => done(String(e)));"""
    )
    assert found["rates"]["perSecond"] == {"v1 champion": 10, "v1 fallback": 2}
    assert found["rates"]["problems"] == {"v1 champion errors": 1, "v1 fallbacks": 2}
    assert found["rates"]["latency"] == {"v1 champion p50": 1, "v1 champion p99": 6}
    assert found["summary"] == {"requests": 34, "errors": 2, "fallbacks": 4, "p99": 6}
    assert found["split"] == "v1 champion 75%, v2 challenger 25%"
    assert found["accuracy"] == 0.9
    assert found["none"] is None
    assert found["look"]["effect"] == {
        "no difference": 0,
        "effect": 0.02,
        "effect low": -0.01,
        "effect high": 0.05,
    }
    assert found["look"]["p"] == {"alpha": 0.05, "p-value": 0.2}
    assert found["noLook"] is None
    assert found["graded"] == {
        "v2 challenger": 50,
        "v2 challenger 95% low": 25,
        "v2 challenger 95% high": 75,
    }


def test_a_forged_change_without_the_csrf_token_is_refused(site: Site) -> None:
    site.sign_in("ops")
    element(site.driver, "table#deployments")
    site.expected_errors = ("/rollback",)  # the browser logs the refused request
    status = site.driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch('/api/v1/deployments/churn-prod/rollback', {method: 'POST',
              headers: {'content-type': 'application/json'}, body: '{}'})
          .then(r => done(r.status), e => done(String(e)));"""
    )
    assert status == 403
    with site.admin() as admin:
        assert admin.show_deployment("churn-prod")["champion"] == 1


def test_the_page_stays_live_through_a_server_restart(site: Site) -> None:
    site.sign_in("ops")
    site.open("/deployments/churn-canary")
    revision = int(element(site.driver, "#active-revision").text)
    site.expected_errors = ("net::ERR_",)  # the polls the stopped server could not answer
    site.server.stop()
    eventually(lambda: "does not answer" in text_of(site.driver, "#status"), "no notice")
    site.server.start()
    with site.admin() as admin:  # a change made after the restart reaches the open page
        admin.promote("churn-canary", version=2)
    eventually(
        lambda: text_of(site.driver, "#active-revision") == str(revision + 1), "page not live"
    )
    eventually(lambda: text_of(site.driver, "#status") == "", "notice not cleared")
    site.shot("after-restart")


def test_sign_out_ends_the_session(site: Site) -> None:
    site.sign_in("reader")
    cookie = site.driver.get_cookie("turnout_session")
    assert cookie is not None
    element(site.driver, "button#sign-out").click()
    element(site.driver, "input#token")
    site.driver.get(f"{site.server.url}/ui/")
    element(site.driver, "input#token")
    gone = httpx.get(  # the cookie, replayed, no longer opens the API
        f"{site.server.url}/api/v1/whoami", cookies={"turnout_session": cookie["value"]}
    )
    assert gone.status_code == 401
