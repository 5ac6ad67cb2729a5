"""The approval page in a real browser: Debian's chromium, headless, driven through
chromium-driver's WebDriver HTTP API (plain JSON over http.client, no client library). Opens the
link from a received webhook, checks that a hostile argument shows as text and never runs,
approves with a reason by clicking, checks the call ran once, reopens the link (already
decided), signs in to the queue (the session cookie is invisible to the page's script) and
keeps screenshots at phone and desktop widths in GATE_BUILD_DIR/test-artefacts/approve_page/."""
import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_approval import ALICE, WAIT_S, Env, Receiver, check, final  # noqa: E402

HOSTILE = "<script>alert(1)</script>"
PHONE, DESKTOP = (390, 844), (1280, 900)
CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


class WebDriver:
    def __init__(self):
        self.port = harness.free_port()
        self.profile = tempfile.mkdtemp(prefix="gh-chromium-")
        self.proc = subprocess.Popen([DRIVER, "--port=%d" % self.port], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                if self.call("GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            check(time.monotonic() < deadline, "chromedriver did not start")
            time.sleep(0.05)
        caps = {"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--user-data-dir=" + self.profile, "--window-size=%d,%d" % DESKTOP]}}
        self.sid = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]

    def call(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT_S)
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"content-type": "application/json"})
        r = c.getresponse()
        out = json.loads(r.read() or b"{}").get("value")
        c.close()
        if r.status >= 400:
            raise RuntimeError("webdriver %s %s: %d %r" % (method, path, r.status, out))
        return out

    def s(self, method, path, body=None):
        return self.call(method, "/session/%s%s" % (self.sid, path), body)

    def go(self, url):
        self.s("POST", "/url", {"url": url})

    def find(self, css):
        el = self.s("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(el.values()))

    def text(self, css="body"):
        return self.s("GET", "/element/%s/text" % self.find(css))

    def type(self, css, text):
        self.s("POST", "/element/%s/value" % self.find(css), {"text": text})

    def click(self, css):
        self.s("POST", "/element/%s/click" % self.find(css), {})

    def alert_open(self):
        try:
            self.s("GET", "/alert/text")
            return True
        except RuntimeError as e:
            return "no such alert" not in str(e)

    def shoot(self, name, size):
        self.s("POST", "/window/rect", {"width": size[0], "height": size[1]})
        d = os.path.join(harness.BUILD_DIR, "test-artefacts", "approve_page")
        os.makedirs(d, exist_ok=True)
        png = base64.b64decode(self.s("GET", "/screenshot"))
        check(png.startswith(b"\x89PNG"), "not a PNG screenshot")
        with open(os.path.join(d, name + ".png"), "wb") as f:
            f.write(png)

    def quit(self):
        try:
            self.s("DELETE", "")
        except (RuntimeError, OSError):
            pass
        self.proc.terminate()
        self.proc.wait(timeout=WAIT_S)
        shutil.rmtree(self.profile, ignore_errors=True)


def wait_text(wd, needle, what):
    """Poll the page's text until it holds needle. Right after a click the next document may not
    have a body yet (no such element) or the old one is going (stale element): look again."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            if needle in wd.text():
                return
        except RuntimeError as e:
            if "no such element" not in str(e) and "stale element" not in str(e):
                raise
        check(time.monotonic() < deadline, "page never showed " + what)
        time.sleep(0.05)


def test_browser_approves_from_the_link_and_signs_in():
    rec = Receiver().start()
    env = Env(rec.port)
    wd = None
    try:
        gw = env.start()
        r = gw.call("ledger", {"account": HOSTILE, "amount": 3})
        cid = r.json()["call_id"]
        _, _, payload = rec.wait_for(cid)
        wd = WebDriver()
        wd.go(payload["approve_url"])
        check(not wd.alert_open(), "the hostile argument ran as script")
        check(HOSTILE in wd.text(), "the argument is not shown as text")
        check(payload["args_sha256"] in wd.text(), "args_sha256 not shown")
        wd.shoot("call-phone", PHONE)
        wd.shoot("call-desktop", DESKTOP)
        wd.type("textarea[name=reason]", "checked the account")
        wd.type("input[name=name]", "Erin")
        wd.click("button[value=approve]")
        wait_text(wd, "Approved", "the outcome")
        check(final(gw, cid)["status"] == "succeeded" and env.executions(cid) == 1, "ran once")
        wd.go(payload["approve_url"])  # reopened later: already decided, by whom
        wait_text(wd, "Erin (decision token)", "who decided")
        check("checked the account" in wd.text(), "the reason is not shown")
        # A second held call, decided from the queue after signing in.
        r = gw.call("ledger", {"account": "acme", "amount": 4})
        cid2 = r.json()["call_id"]
        base = "http://127.0.0.1:%d" % gw.port
        wd.go(base + "/approvals")
        wd.type("input[name=token]", ALICE)
        wd.click("form[action='/approvals/signin'] button")
        wait_text(wd, "Signed in as alice", "the queue")
        check(wd.s("POST", "/execute/sync", {"script": "return document.cookie", "args": []}) == "",
              "the session cookie is readable by script")
        wd.shoot("queue-phone", PHONE)
        wd.shoot("queue-desktop", DESKTOP)
        wd.click("form[action='/approve/%s'] button[value=deny]" % cid2)
        wait_text(wd, "Denied", "the deny outcome")
        check(final(gw, cid2)["status"] == "denied" and env.executions(cid2) == 0, "denied")
        env.stop_and_verify()
    finally:
        if wd:
            wd.quit()
        env.close()
        rec.stop()


def main():
    if not harness.GATEHOUSE:
        harness.skip("GATEHOUSE is not set")
    if not CHROMIUM or not os.access(DRIVER, os.X_OK):
        harness.skip("no chromium / chromium-driver (scripts/install-deps.sh installs them)")
    test_browser_approves_from_the_link_and_signs_in()
    print("ok   test_browser_approves_from_the_link_and_signs_in", flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
