"""The approval page (issue 18), end to end against the real gateway, over real HTTP: the link
from a received webhook, its security headers, escaping of hostile arguments, CSRF refusal,
single use, deny, expiry, already-decided-by-whom, the approver sign-in with its session cookie,
that no token reaches the gateway's log, and the Slack message format with its follow-ups (shape
checked by a local receiver against what Slack documents). test_approve_page_browser.py clicks
through the same page in a real browser. Plain HTML forms, parsed here with html.parser.
"""
import html.parser
import http.client
import json
import os
import re
import signal
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_approval import (ALICE, BOB, WAIT_S, Env, Receiver, check, final,  # noqa: E402
                           wait_delivered)

HOSTILE = "<script>alert(1)</script>"


class Forms(html.parser.HTMLParser):
    """Every form of a page: {"action", "fields": {name: value}} (hidden and text inputs)."""

    def __init__(self, text):
        super().__init__()
        self.forms = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "method": a.get("method"), "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")


def page(gw, method, path, form=None, cookie=None, content_type="application/x-www-form-urlencoded"):
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    headers = {}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers["content-type"] = content_type
    if cookie:
        headers["cookie"] = cookie
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    out = harness.Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    conn.close()
    out.text = out.body.decode()
    return out


def check_page_headers(r):
    h = r.headers
    check(h.get("content-security-policy", "").startswith("default-src 'none'"), h)
    check("script-src" not in h["content-security-policy"], h)
    check(h.get("referrer-policy") == "no-referrer", h)
    check(h.get("x-frame-options") == "DENY", h)
    check(h.get("x-content-type-options") == "nosniff", h)
    check(h.get("cache-control") == "no-store", h)
    check(h.get("content-type", "").startswith("text/html"), h)


def link_path(url):
    u = urllib.parse.urlsplit(url)
    return u.path + "?" + u.query


def held_with_link(gw, rec, account="acme"):
    r = gw.call("ledger", {"account": account, "amount": 7})
    check(r.status == 202, r.body)
    cid = r.json()["call_id"]
    _, _, payload = rec.wait_for(cid)
    wait_delivered(gw, cid)
    check(payload["approve_url"] == "%s/approve/%s?t=%s" % (
        "http://127.0.0.1:%d" % gw.port, cid, payload["decision_token"]), payload)
    return cid, payload


def audit_approver(env, cid, event):
    recs = [x for x in harness.audit_records(env.state) if x.get("call_id") == cid and x["event"] == event]
    check(len(recs) == 1, recs)
    return recs[0]["approver"]


def test_link_shows_escaped_call_csrf_single_use_already_decided():
    rec = Receiver().start()
    env = Env(rec.port)
    try:
        gw = env.start()
        cid, payload = held_with_link(gw, rec, account=HOSTILE)
        token = payload["decision_token"]
        r = page(gw, "GET", link_path(payload["approve_url"]))
        check(r.status == 200, r.text)
        check_page_headers(r)
        check("&lt;script&gt;alert(1)&lt;/script&gt;" in r.text and "<script" not in r.text, r.text)
        for shown in (payload["args_sha256"], payload["policy_sha256"], "ledger for tests", "process",
                      "high"):
            check(shown in r.text, "page does not show " + shown)
        forms = Forms(r.text).forms
        check(len(forms) == 1 and forms[0]["action"] == "/approve/" + cid, forms)
        f = forms[0]["fields"]
        check(f["t"] == token and f["args_sha256"] == payload["args_sha256"] and len(f["csrf"]) == 64, f)
        # Forged posts: no CSRF token, another one, or JSON instead of the form.
        base = {"t": token, "args_sha256": f["args_sha256"], "decision": "approve"}
        for bad in (dict(base), dict(base, csrf="0" * 64)):
            r = page(gw, "POST", "/approve/" + cid, bad)
            check(r.status == 403 and "CSRF" in r.text, (r.status, r.text))
            check_page_headers(r)
        r = page(gw, "POST", "/approve/" + cid, dict(base, csrf=f["csrf"]), content_type="application/json")
        check(r.status == 415, r.status)
        check(env.executions(cid) == 0, "a refused post ran the call")
        # The real form: approved, with the typed name, and run once.
        r = page(gw, "POST", "/approve/" + cid, dict(base, csrf=f["csrf"], name="Carol <b>", reason="ok"))
        check(r.status == 200 and "Approved" in r.text, (r.status, r.text))
        check("Carol &lt;b&gt; (decision token)" in r.text, r.text)
        check('href="/approve/%s?t=%s">Reload' % (cid, token) in r.text, r.text)
        check(final(gw, cid)["status"] == "succeeded", "the approved call did not succeed")
        check(env.executions(cid) == 1, "ran %d times" % env.executions(cid))
        check(audit_approver(env, cid, "call.approved") == "Carol <b> (decision token)", "audit")
        # Reload: the outcome, who decided, and no form.
        r = page(gw, "GET", link_path(payload["approve_url"]))
        check(r.status == 200 and "Decided by" in r.text and "Carol &lt;b&gt;" in r.text, r.text)
        check("status: succeeded" in r.text and not Forms(r.text).forms, r.text)
        # The same form again: already decided, nothing runs again.
        r = page(gw, "POST", "/approve/" + cid, dict(base, csrf=f["csrf"], decision="deny"))
        check(r.status == 409 and "already" in r.text, (r.status, r.text))
        check(env.executions(cid) == 1, "a second decision ran the call again")
        # Wrong, missing and another call's tokens: an error page without the call.
        cid2, p2 = held_with_link(gw, rec)
        for path, status in (("/approve/%s?t=gdt_%s" % (cid, "0" * 64), 401),
                             ("/approve/%s?t=nonsense" % cid, 401),
                             ("/approve/%s" % cid, 401),
                             ("/approve/%s?t=%s" % (cid, p2["decision_token"]), 403)):
            r = page(gw, "GET", path)
            check(r.status == status and "ledger" not in r.text and "acme" not in r.text,
                  (path, r.status, r.text))
            check_page_headers(r)
        log = gw.read_log()
        check(token not in log and p2["decision_token"] not in log, "a decision token is in the log")
        env.stop_and_verify()
    finally:
        env.close()
        rec.stop()


def test_deny_and_expired_hold():
    rec = Receiver().start()
    env = Env(rec.port)
    try:
        gw = env.start()
        cid, payload = held_with_link(gw, rec)
        r = page(gw, "GET", link_path(payload["approve_url"]))
        f = Forms(r.text).forms[0]["fields"]
        r = page(gw, "POST", "/approve/" + cid, dict(f, decision="deny", reason="not today"))
        check(r.status == 200 and "Denied" in r.text and "not today" in r.text, (r.status, r.text))
        check(final(gw, cid)["status"] == "denied" and env.executions(cid) == 0, "deny")
        check(audit_approver(env, cid, "call.denied") == "decision token", "audit")
        # A hold that expires (ledger_short: 2 s window) before anyone decides.
        r = gw.call("ledger_short", {"account": "acme", "amount": 1})
        cid = r.json()["call_id"]
        _, _, payload = rec.wait_for(cid)
        r = page(gw, "GET", link_path(payload["approve_url"]))
        f = Forms(r.text).forms[0]["fields"]
        check(final(gw, cid)["status"] == "expired", "the hold did not expire")
        r = page(gw, "GET", link_path(payload["approve_url"]))
        check(r.status == 200 and "Expired" in r.text and not Forms(r.text).forms, r.text)
        r = page(gw, "POST", "/approve/" + cid, dict(f, decision="approve"))
        check(r.status == 410 and "Expired" in r.text, (r.status, r.text))
        check(env.executions(cid) == 0, "an expired hold ran")
        env.stop_and_verify()
    finally:
        env.close()
        rec.stop()


def test_sign_in_session_queue_and_decision():
    rec = Receiver().start()
    env = Env(rec.port)
    try:
        gw = env.start()
        cid, _ = held_with_link(gw, rec, account=HOSTILE)
        r = page(gw, "GET", "/approvals")
        check(r.status == 200 and Forms(r.text).forms[0]["action"] == "/approvals/signin", r.text)
        check_page_headers(r)
        r = page(gw, "POST", "/approvals/signin", {"token": "not-a-token-at-all"})
        check(r.status == 401 and "set-cookie" not in r.headers, (r.status, r.headers))
        r = page(gw, "POST", "/approvals/signin", {"token": ALICE})
        check(r.status == 303 and r.headers.get("location") == "/approvals", (r.status, r.headers))
        sc = r.headers["set-cookie"]
        m = re.match(r"gh_session=([0-9a-f]{64}); Path=/; Max-Age=\d+; HttpOnly; SameSite=Strict$", sc)
        check(m, "cookie: " + sc)  # no Secure on loopback
        check(ALICE not in sc, "the cookie holds the token")
        cookie = "gh_session=" + m.group(1)
        r = page(gw, "GET", "/approvals", cookie=cookie)
        check(r.status == 200 and "alice" in r.text and cid in r.text, r.text)
        check("&lt;script&gt;" in r.text and "<script" not in r.text, r.text)
        forms = [f for f in Forms(r.text).forms if f["action"] == "/approve/" + cid]
        check(len(forms) == 1 and "t" not in forms[0]["fields"], forms)
        f = forms[0]["fields"]
        # Without the session's CSRF token (a cross-site post carrying the cookie): refused.
        r = page(gw, "POST", "/approve/" + cid, dict(f, csrf="", decision="approve"), cookie=cookie)
        check(r.status == 403 and env.executions(cid) == 0, (r.status, r.text))
        # Another approver's session's CSRF token does not fit this one.
        r = page(gw, "POST", "/approvals/signin", {"token": BOB})
        bob = r.headers["set-cookie"].split(";")[0]
        r = page(gw, "POST", "/approve/" + cid, dict(f, decision="approve"), cookie=bob)
        check(r.status == 403 and env.executions(cid) == 0, (r.status, r.text))
        r = page(gw, "POST", "/approve/" + cid, dict(f, decision="approve", reason="fine"), cookie=cookie)
        check(r.status == 200 and "Approved" in r.text, (r.status, r.text))
        check(final(gw, cid)["status"] == "succeeded" and env.executions(cid) == 1, "run once")
        check(audit_approver(env, cid, "call.approved") == "alice", "audit")
        r = page(gw, "GET", "/approvals?status=finished", cookie=cookie)
        check(r.status == 200 and cid in r.text and "Decided by" in r.text, r.text)
        r = page(gw, "GET", "/approvals?status=bogus", cookie=cookie)
        check(r.status == 400, r.status)
        # Sign out: the session is gone server-side, not only the cookie.
        signout = [f for f in Forms(page(gw, "GET", "/approvals", cookie=cookie).text).forms
                   if f["action"] == "/approvals/signout"][0]["fields"]
        r = page(gw, "POST", "/approvals/signout", signout, cookie=cookie)
        check(r.status == 303 and "Max-Age=0" in r.headers.get("set-cookie", ""), r.headers)
        r = page(gw, "GET", "/approvals", cookie=cookie)
        check(Forms(r.text).forms[0]["action"] == "/approvals/signin", "still signed in after sign-out")
        check(ALICE not in gw.read_log() and BOB not in gw.read_log(), "an approver token is in the log")
        r = gw.request("GET", "/approve.css")
        check(r.status == 200 and r.headers["content-type"].startswith("text/css"), r.headers)
        env.stop_and_verify()
    finally:
        env.close()
        rec.stop()


def wait_message(rec, pred, what):
    """The first verified delivery whose payload satisfies pred (polled against a deadline)."""
    deadline = time.monotonic() + WAIT_S
    with rec.cond:
        while True:
            for h, _, p in rec.accepted:
                if pred(p):
                    return h, p
            left = deadline - time.monotonic()
            check(left > 0, "no message: " + what)
            rec.cond.wait(left)


def line(p):
    """The notification line of a chat message: Slack's text, Discord's content."""
    return p.get("text") or p.get("content") or ""


def mentions(cid):
    return lambda p: cid in line(p)


def check_slack_shape(msg, cid):
    """What Slack documents for an incoming webhook with Block Kit: text plus at most 50 blocks,
    a header's plain_text at most 150 characters, section text at most 3000, at most 10 fields
    of at most 2000 each, a link button's url at most 3000."""
    check(set(msg) == {"text", "blocks"} and msg["text"] and len(msg["blocks"]) <= 50, msg)
    types = [b["type"] for b in msg["blocks"]]
    check(types == ["header", "section", "section", "actions"], types)
    header, facts, args, actions = msg["blocks"]
    check(header["text"]["type"] == "plain_text" and len(header["text"]["text"]) <= 150, header)
    check(set(header) == {"type", "text"}, header)
    check(len(facts["fields"]) <= 10 and all(f["type"] == "mrkdwn" and len(f["text"]) <= 2000
                                             for f in facts["fields"]), facts)
    check(args["text"]["type"] == "mrkdwn" and len(args["text"]["text"]) <= 3000, args)
    (button,) = actions["elements"]
    check(button["type"] == "button" and button["text"]["type"] == "plain_text", button)
    check(len(button["url"]) <= 3000 and "/approve/%s?t=gdt_" % cid in button["url"], button)
    return button["url"]


def test_slack_message_link_and_follow_ups():
    rec = Receiver().start()
    env = Env(rec.port, extra_config="  webhook_format: slack\n  public_url: https://gate.example.org/\n")
    try:
        gw = env.start()
        r = gw.call("ledger", {"account": HOSTILE, "amount": 5})
        cid = r.json()["call_id"]
        h, msg = wait_message(rec, mentions(cid), "the Slack message of " + cid)
        check(h.get("content-type", "").startswith("application/json"), h)
        url = check_slack_shape(msg, cid)
        check(url.startswith("https://gate.example.org/approve/%s?t=" % cid), url)  # approval.public_url
        text = json.dumps(msg)
        check("&lt;script&gt;" in text and "<script" not in text, "mrkdwn not escaped: " + text)
        check(r.json()["args_sha256"] in msg["blocks"][2]["text"]["text"], msg)
        # The button opens the page; approving there sends the outcome as a follow-up.
        r = page(gw, "GET", link_path(url))
        check(r.status == 200, r.text)
        f = Forms(r.text).forms[0]["fields"]
        r = page(gw, "POST", "/approve/" + cid, dict(f, decision="approve", name="Dana", reason="<ok>"))
        check(r.status == 200, r.text)
        _, up = wait_message(rec, lambda p: mentions(cid)(p) and line(p).startswith("Approved"),
                             "the approval follow-up")
        check(set(up) == {"text"} and "Dana (decision token): &lt;ok&gt;" in up["text"], up)
        check(final(gw, cid)["status"] == "succeeded" and env.executions(cid) == 1, "run once")
        # Denied through the API, and expired: follow-ups too.
        r = gw.call("ledger", {"account": "acme", "amount": 6})
        cid = r.json()["call_id"]
        wait_message(rec, mentions(cid), "the Slack message of " + cid)
        wait_delivered(gw, cid)
        r = gw.request("POST", "/v1/approvals/" + cid, {"decision": "deny", "args_sha256": r.json()["args_sha256"]},
                       headers={"authorization": "Bearer " + BOB})
        check(r.status == 200, r.body)
        _, up = wait_message(rec, lambda p: mentions(cid)(p) and line(p).startswith("Denied"), "deny")
        check("by bob" in up["text"], up)
        r = gw.call("ledger_short", {"account": "acme", "amount": 1})
        cid = r.json()["call_id"]
        _, up = wait_message(rec, lambda p: mentions(cid)(p) and line(p).startswith("Expired"), "expiry")
        check(env.executions(cid) == 0, "an expired hold ran")
        env.stop_and_verify()
    finally:
        env.close()
        rec.stop()


def test_discord_message_and_follow_up():
    """Discord's incoming webhook: content, one embed linking to the page, no mentions parsed;
    limits as Discord documents them (content 2000, title 256, description 4096, 25 fields of
    name 256 / value 1024)."""
    rec = Receiver().start()
    env = Env(rec.port, extra_config="  webhook_format: discord\n")
    try:
        gw = env.start()
        r = gw.call("ledger", {"account": "@everyone `x` " + HOSTILE, "amount": 2})
        held = r.json()
        cid = held["call_id"]
        _, msg = wait_message(rec, mentions(cid), "the Discord message of " + cid)
        check(set(msg) == {"content", "allowed_mentions", "embeds"} and len(msg["content"]) <= 2000, msg)
        check(msg["allowed_mentions"] == {"parse": []}, msg)
        (embed,) = msg["embeds"]
        check(set(embed) == {"title", "url", "description", "fields"}, embed)
        check(len(embed["title"]) <= 256 and len(embed["description"]) <= 4096, embed)
        check(len(embed["fields"]) <= 25 and all(len(f["name"]) <= 256 and len(f["value"]) <= 1024
                                                  for f in embed["fields"]), embed)
        check("/approve/%s?t=gdt_" % cid in embed["url"], embed)
        desc = embed["description"]
        check(desc.count("```") == 2 and "`x`" not in desc and held["args_sha256"] in desc, desc)
        r = page(gw, "GET", link_path(embed["url"]))
        check(r.status == 200 and "&lt;script&gt;" in r.text, r.status)
        r = gw.request("POST", "/v1/approvals/" + cid, {"decision": "deny", "args_sha256": held["args_sha256"]},
                       headers={"authorization": "Bearer " + BOB})
        check(r.status == 200, r.body)
        _, up = wait_message(rec, lambda p: mentions(cid)(p) and line(p).startswith("Denied"), "deny")
        check(set(up) == {"content", "allowed_mentions"} and "by bob" in up["content"], up)
        env.stop_and_verify()
    finally:
        env.close()
        rec.stop()


def main():
    if not harness.GATEHOUSE:
        harness.skip("GATEHOUSE is not set")
    harness.run_functions([test_link_shows_escaped_call_csrf_single_use_already_decided,
                           test_deny_and_expired_hold, test_sign_in_session_queue_and_decision,
                           test_slack_message_link_and_follow_ups, test_discord_message_and_follow_up])


if __name__ == "__main__":
    main()
