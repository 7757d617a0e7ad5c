#!/usr/bin/env bash
# The web client's files, security headers, cookie session and CSRF
# defence against a real vmseal-managerd, without a browser
# (tests/web/web_session.py says what is checked).
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/managerd/managerd_lib.sh"
M=$TMP/m
mgr_init "$M" --host 127.0.0.1
mgr_start "$M"
$PY "$VMSEAL_SRC/tests/web/web_session.py" "$MURL" "$M/ca.crt" "$M/admin-password" "$MLOG" ||
  fail "web session checks"
mgr_stop
ok "vmseal-managerd stopped cleanly"
