#!/usr/bin/python3
"""The web client's session and headers against a real vmseal-managerd, as a
browser and as an attacker would use them (docs/web.md):

  web_session.py URL CA ADMIN_PASSWORD_FILE MANAGERD_LOG

- every answer (files, API, errors) carries the security headers;
- the static files: types, no traversal, GET only;
- a Bearer login sets no cookie; a browser (cookie) login sets one
  HttpOnly, Secure, SameSite=Strict __Host- cookie and never returns the
  token in the body; every Set-Cookie ever seen has those attributes;
- a cookie login that is cross-site or not JSON is refused (login CSRF);
- with the cookie: reads work, a state-changing request without the CSRF
  token, with another session's token, from another Origin or with
  Sec-Fetch-Site cross-site is refused (403, event web.csrf) and changes
  nothing; with the token it works; Bearer clients never need it and an
  Authorization header is never helped by a cookie;
- no token is taken from a URL, and none appears in the manager's log;
- logout clears the cookie and ends the session."""
import http.client
import json
import re
import ssl
import sys
import urllib.parse

URL, CA, PWFILE, LOG = sys.argv[1:5]
u = urllib.parse.urlparse(URL)
CTX = ssl.create_default_context(cafile=CA)
PASSWORD = open(PWFILE).read().strip()
COOKIE = "__Host-vmseal-session"
SET_COOKIES = []
SECRETS = []   # every token and cookie value seen: none may reach the log
n_ok = 0


def ok(msg):
    global n_ok
    n_ok += 1
    print(f"ok - {msg}")


def fail(msg):
    print(f"not ok - {msg}", file=sys.stderr)
    sys.exit(1)


def req(method, path, body=None, headers=None, raw=None):
    c = http.client.HTTPSConnection(u.hostname, u.port, context=CTX, timeout=30)
    h = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    payload = r.read()
    hdrs = r.getheaders()
    c.close()
    for k, v in hdrs:
        if k.lower() == "set-cookie":
            SET_COOKIES.append(v)
    try:
        j = json.loads(payload) if payload else None
    except ValueError:
        j = None
    return r.status, {k.lower(): v for k, v in hdrs}, j, payload, hdrs


def expect(status, want, what, j=None):
    if status != want:
        fail(f"{what}: HTTP {status}, expected {want}: {j}")


SEC = {
    "content-security-policy": None,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


def check_security_headers(h, what):
    for k, v in SEC.items():
        if k not in h:
            fail(f"{what}: no {k} header")
        if v and h[k] != v:
            fail(f"{what}: {k} is {h[k]!r}, expected {v!r}")
    csp = h["content-security-policy"]
    d = {p.split()[0]: p.split()[1:] for p in (x.strip() for x in csp.split(";")) if p}
    for k, v in {"default-src": ["'none'"], "script-src": ["'self'"], "frame-ancestors": ["'none'"],
                 "base-uri": ["'none'"], "form-action": ["'none'"], "connect-src": ["'self'"],
                 "require-trusted-types-for": ["'script'"]}.items():
        if d.get(k) != v:
            fail(f"{what}: CSP {k} is {d.get(k)}, expected {v} ({csp})")
    if "unsafe-inline" in csp or "unsafe-eval" in csp or "*" in csp:
        fail(f"{what}: CSP allows inline script, eval or any origin: {csp}")


# --- static files and headers
st, h, j, body, _ = req("GET", "/")
expect(st, 200, "GET /")
check_security_headers(h, "GET /")
if not h["content-type"].startswith("text/html") or b'type="module"' not in body:
    fail(f"GET / is not the app's page: {h['content-type']}")
if re.search(rb"<script(?![^>]*\bsrc=)", body):
    fail("index.html has an inline script")
if re.search(rb"\son[a-z]+\s*=", body, re.I) or re.search(rb"style=", body):
    fail("index.html has inline event handlers or styles")
st, h, _, body, _ = req("GET", "/ui/js/app.js")
expect(st, 200, "GET app.js")
if not h["content-type"].startswith("text/javascript"):
    fail(f"app.js served as {h['content-type']}")
check_security_headers(h, "GET app.js")
st, h, _, _, _ = req("GET", "/ui/app.css")
expect(st, 200, "GET app.css")
if not h["content-type"].startswith("text/css"):
    fail(f"app.css served as {h['content-type']}")
for p in ["/ui/../managerd.conf", "/ui/%2e%2e/managerd.conf", "/ui/nothing.js", "/ui/js/../../admin-password",
          "/ui//etc/passwd", "/ui/embed.py", "/ui/meson.build"]:
    st, h, _, body, _ = req("GET", p)
    if st != 404 or b"BEGIN" in body or b"password" in body.lower() and b"no such file" not in body:
        fail(f"GET {p}: HTTP {st}: {body[:100]!r}")
    check_security_headers(h, f"GET {p}")
st, h, _, _, _ = req("POST", "/ui/index.html", raw=b"x")
expect(st, 405, "POST a static file")
st, h, j, _, _ = req("GET", "/api/v1/users")
expect(st, 401, "API without a session")
check_security_headers(h, "an API error")
st, h, j, _, _ = req("GET", "/ui/api-table.json")
expect(st, 200, "api-table.json")
if not any(o["id"] == "vm.encrypt" and o["privileges"] == "Cryptographer.Encrypt" for o in j["operations"]):
    fail("api-table.json lacks vm.encrypt")
ok("files and API answers carry CSP (no inline script or eval, Trusted Types, frame-ancestors 'none'), nosniff, DENY, no-referrer")
ok("static files: right types, no traversal, unknown paths 404, GET only; api-table.json is the operation table")

# --- Bearer clients: unchanged, no cookie
n = len(SET_COOKIES)
st, h, j, _, _ = req("POST", "/api/v1/session", {"user": "administrator", "password": PASSWORD})
expect(st, 201, "Bearer login", j)
BEARER = j["token"]
SECRETS.append(BEARER)
if len(SET_COOKIES) != n or "csrf" in j:
    fail("a Bearer login set a cookie or a CSRF token")
auth = {"Authorization": f"Bearer {BEARER}"}
st, h, j, _, _ = req("POST", "/api/v1/groups", {"name": "bearer-group"}, auth)
expect(st, 201, "Bearer POST without any CSRF token", j)
st, h, j, _, _ = req("POST", "/api/v1/groups", {"name": "bearer-group2"},
                     dict(auth, Origin="https://evil.example", **{"Sec-Fetch-Site": "cross-site"}))
expect(st, 201, "Bearer POST (Origin is not about Bearer tokens)", j)
ok("Bearer login: token in the body, no cookie; Bearer requests need no CSRF token")

# --- a browser's login
def cookie_login(extra=None, raw=None, user="administrator", password=None):
    return req("POST", "/api/v1/session",
               None if raw else {"user": user, "password": password or PASSWORD, "cookie": True},
               dict({"Origin": URL, "Sec-Fetch-Site": "same-origin"}, **(extra or {})), raw=raw)


st, h, j, payload, _ = cookie_login({"Origin": "https://evil.example"})
expect(st, 403, "cookie login from another origin", j)
st, h, j, payload, _ = cookie_login({"Sec-Fetch-Site": "cross-site"})
expect(st, 403, "cookie login with Sec-Fetch-Site cross-site", j)
# the text/plain form trick: a JSON body a cross-site <form> can send
form = b'{"user":"administrator","password":"' + PASSWORD.encode() + b'","cookie":true}'
st, h, j, payload, _ = cookie_login({"Content-Type": "text/plain", "Origin": "null"}, raw=form)
expect(st, 403, "cookie login as text/plain", j)
st, h, j, payload, _ = req("POST", "/api/v1/session", None, {"Content-Type": "text/plain"}, raw=form)
expect(st, 403, "cookie login as text/plain without Origin", j)
if any(COOKIE in c and "Max-Age=0" not in c for c in SET_COOKIES):
    fail("a refused login set a session cookie")
ok("a browser login that is cross-site or not JSON is refused (login CSRF), sets no cookie")

st, h, j, payload, hdrs = cookie_login()
expect(st, 201, "cookie login", j)
sc = [v for k, v in hdrs if k.lower() == "set-cookie"]
if len(sc) != 1:
    fail(f"cookie login: {len(sc)} Set-Cookie headers")
m = re.match(r"__Host-vmseal-session=([0-9a-f]{64});", sc[0])
if not m:
    fail(f"cookie login: Set-Cookie {sc[0]!r}")
TOKEN = m.group(1)
SECRETS.append(TOKEN)
attrs = [a.strip() for a in sc[0].split(";")[1:]]
for a in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"]:
    if a not in attrs:
        fail(f"session cookie without {a}: {sc[0]}")
if any(a.lower().startswith("domain=") for a in attrs):
    fail("session cookie has a Domain")
if TOKEN.encode() in payload or "token" in j:
    fail("cookie login put the token in the body")
CSRF = j.get("csrf", "")
if not re.fullmatch(r"[0-9a-f]{64}", CSRF) or CSRF == TOKEN:
    fail(f"cookie login: csrf {CSRF!r}")
ok("browser login: HttpOnly, Secure, SameSite=Strict __Host- cookie (Path=/, no Domain); the body has a CSRF token, never the session token")

ck = {"Cookie": f"{COOKIE}={TOKEN}"}
same = dict(ck, Origin=URL, **{"Sec-Fetch-Site": "same-origin"})
st, h, j, _, _ = req("GET", "/api/v1/session", headers=ck)
expect(st, 200, "GET /session with the cookie", j)
if j.get("csrf") != CSRF or j.get("user") != "administrator":
    fail(f"GET /session with the cookie: {j}")
st, h, j, _, _ = req("GET", "/api/v1/session", headers=auth)
if "csrf" in j:
    fail("a Bearer GET /session returned a CSRF token")
ok("the cookie authenticates reads; GET /session gives a reloaded page its CSRF token")


def user_exists(name):
    st, _, j, _, _ = req("GET", f"/api/v1/users/{name}", headers=auth)
    return st == 200


newuser = {"name": "mallory", "password": "mallorypass1", "role": "Administrator"}
cases = [
    ("no CSRF token", same),
    ("a wrong CSRF token", dict(same, **{"X-CSRF-Token": "0" * 64})),
    ("the session token as CSRF token", dict(same, **{"X-CSRF-Token": TOKEN})),
    ("a short CSRF token", dict(same, **{"X-CSRF-Token": CSRF[:10]})),
    ("another Origin", dict(same, Origin="https://evil.example", **{"X-CSRF-Token": CSRF})),
    ("Origin null", dict(same, Origin="null", **{"X-CSRF-Token": CSRF})),
    ("Sec-Fetch-Site cross-site", dict(same, **{"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": CSRF})),
    ("Sec-Fetch-Site same-site", dict(same, **{"Sec-Fetch-Site": "same-site", "X-CSRF-Token": CSRF})),
]
for what, hd in cases:
    st, h, j, _, _ = req("POST", "/api/v1/users", newuser, hd)
    if st != 403 or "cross-site request refused" not in (j or {}).get("error", ""):
        fail(f"cookie POST with {what}: HTTP {st} {j}")
    if user_exists("mallory"):
        fail(f"cookie POST with {what} created the user")
# the same for other methods
for method, p, b in [("DELETE", "/api/v1/session", None), ("PATCH", "/api/v1/users/administrator", {"role": "ReadOnly"}),
                     ("PUT", "/api/v1/users/administrator/password", {"password": "x" * 12, "old_password": PASSWORD})]:
    st, h, j, _, _ = req(method, p, b, same)
    expect(st, 403, f"cookie {method} {p} without the CSRF token", j)
st, h, j, _, _ = req("GET", "/api/v1/session", headers=ck)
expect(st, 200, "the session survived the refused DELETE", j)
# a cross-site GET with the cookie (a browser without SameSite) is refused too
st, h, j, _, _ = req("GET", "/api/v1/events", headers=dict(ck, **{"Sec-Fetch-Site": "cross-site"}))
expect(st, 403, "cookie GET with Sec-Fetch-Site cross-site", j)
ok("with the cookie, a state-changing request without the right CSRF token, or from another origin/site, is refused (403) and changes nothing")

# another session's CSRF token does not fit
st, h, j2, _, hdrs2 = cookie_login()
expect(st, 201, "a second cookie login", j2)
TOKEN2 = re.search(r"=([0-9a-f]{64});", [v for k, v in hdrs2 if k.lower() == "set-cookie"][0]).group(1)
SECRETS.append(TOKEN2)
if j2["csrf"] == CSRF:
    fail("two sessions have the same CSRF token")
st, h, j, _, _ = req("POST", "/api/v1/users", newuser, dict(same, **{"X-CSRF-Token": j2["csrf"]}))
expect(st, 403, "CSRF token of another session", j)
ok("a CSRF token fits only its own session")

# an Authorization header is never helped by the cookie
st, h, j, _, _ = req("GET", "/api/v1/session", headers=dict(ck, Authorization="Bearer " + "0" * 64))
expect(st, 401, "a bad Bearer token with a good cookie", j)
st, h, j, _, _ = req("GET", "/api/v1/session", headers=dict(ck, Authorization="Basic eDp5"))
expect(st, 401, "a Basic header with a good cookie", j)
# no token from a URL
for p in [f"/api/v1/session?token={BEARER}", f"/api/v1/session?access_token={BEARER}",
          f"/api/v1/session?{COOKIE}={TOKEN}"]:
    st, h, j, _, _ = req("GET", p)
    expect(st, 401, f"a token in the URL ({p.split('?')[1].split('=')[0]})", j)
ok("an Authorization header never falls back to the cookie; no token is taken from a URL")

# with the token it works
st, h, j, _, _ = req("POST", "/api/v1/users", dict(newuser, name="webuser"), dict(same, **{"X-CSRF-Token": CSRF}))
expect(st, 201, "cookie POST with the CSRF token", j)
st, h, j, _, _ = req("DELETE", "/api/v1/users/webuser", None, dict(ck, **{"X-CSRF-Token": CSRF}))
expect(st, 200, "cookie DELETE with the CSRF token and no Origin (same-origin fetch without Origin)", j)
ok("with the session's CSRF token, state-changing requests work")

# changing one's own password from the browser keeps this session, ends the others
st, h, j, _, _ = req("POST", "/api/v1/users", {"name": "carol", "password": "carolpass1", "role": "ReadOnly"}, auth)
expect(st, 201, "user carol", j)
sess = []
for _ in range(2):
    st, h, jc, _, hd = cookie_login(user="carol", password="carolpass1")
    expect(st, 201, "carol's cookie login", jc)
    t = re.search(r"=([0-9a-f]{64});", [v for k, v in hd if k.lower() == "set-cookie"][0]).group(1)
    SECRETS.append(t)
    sess.append((t, jc["csrf"]))
st, h, j, _, _ = req("PUT", "/api/v1/users/carol/password", {"password": "carolpass2", "old_password": "carolpass1"},
                     {"Cookie": f"{COOKIE}={sess[0][0]}", "X-CSRF-Token": sess[0][1]})
expect(st, 200, "carol changes her password in the browser", j)
st, h, j, _, _ = req("GET", "/api/v1/session", headers={"Cookie": f"{COOKIE}={sess[0][0]}"})
expect(st, 200, "carol's own browser session after her password change", j)
st, h, j, _, _ = req("GET", "/api/v1/session", headers={"Cookie": f"{COOKIE}={sess[1][0]}"})
expect(st, 401, "carol's other browser session after her password change", j)
ok("a password changed in the browser keeps that browser's session and ends the others")

# refusals are events
st, h, j, _, _ = req("GET", "/api/v1/events?action=web.csrf&since=-50&limit=50", headers=auth)
expect(st, 200, "events", j)
if len([e for e in j["events"] if e["result"] == "denied" and e["user"] == "administrator"]) < len(cases):
    fail(f"refused cross-site requests not all recorded: {len(j['events'])}")
ok("every refused cross-site request is an event (web.csrf, denied)")

# logout: the cookie goes, the session ends
n = len(SET_COOKIES)
st, h, j, _, hdrs = req("DELETE", "/api/v1/session", None, dict(same, **{"X-CSRF-Token": CSRF}))
expect(st, 200, "cookie logout", j)
sc = [v for k, v in hdrs if k.lower() == "set-cookie"]
if len(sc) != 1 or not re.match(r"__Host-vmseal-session=;", sc[0]) or "Max-Age=0" not in sc[0]:
    fail(f"logout did not clear the cookie: {sc}")
st, h, j, _, hdrs = req("GET", "/api/v1/session", headers=ck)
expect(st, 401, "the logged-out cookie", j)
if not any("Max-Age=0" in v for k, v in hdrs if k.lower() == "set-cookie"):
    fail("a stale cookie is not cleared")
ok("logout clears the cookie and ends the session; a stale cookie is cleared")

# every cookie ever set: Secure, HttpOnly, SameSite=Strict
for c in SET_COOKIES:
    a = [x.strip() for x in c.split(";")[1:]]
    if not {"Secure", "HttpOnly", "SameSite=Strict", "Path=/"} <= set(a) or not c.startswith(COOKIE + "="):
        fail(f"a cookie without Secure/HttpOnly/SameSite=Strict: {c}")
ok(f"all {len(SET_COOKIES)} Set-Cookie headers had Secure, HttpOnly, SameSite=Strict, Path=/")

# no token or CSRF token in the log
log = open(LOG, encoding="utf-8", errors="replace").read()
for s in SECRETS + [CSRF, j2["csrf"]]:
    if s in log:
        fail("a session or CSRF token is in the manager's log")
ok("no session token or CSRF token in the manager's log")
print(f"{n_ok} checks passed")
