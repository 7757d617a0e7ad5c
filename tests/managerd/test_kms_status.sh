#!/usr/bin/env bash
# The manager's key-provider status shows what each KMS server says of its
# cluster (KMIP Query, Server Information: docs/kmsd.md, "Cluster status
# over KMIP"), and takes nothing a server sends on trust: a hostile KMIP
# server (hostile_kmip_server.py) answers with terminal escapes, forged
# lines, bidi overrides, a 5,000-byte address, negative and huge numbers,
# wrong types and 1,000 nodes; the manager's JSON and the CLI's table get
# escaped, bounded values, and the manager keeps serving. A real SQLite
# vmseal-kmsd is shown as one node. (A PostgreSQL cluster through the
# manager: tests/system/test_e2e_kms_cluster.sh.)
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"
source "$VMSEAL_SRC/tests/managerd/managerd_lib.sh"
export HOME=$TMP/home XDG_CONFIG_HOME=
mkdir -p "$HOME"

kmsd_init "$TMP/k"
"$KMSD" -c "$TMP/k" enroll manager >/dev/null 2>&1 || fail "enroll manager"
kmsd_start "$TMP/k"
$PY "$VMSEAL_SRC/tests/managerd/hostile_kmip_server.py" "$TMP/k" "$TMP/evil.port" 2>"$TMP/evil.log" &
EVIL=$!
at_exit "kill $EVIL 2>/dev/null"
daemon_wait_port hostile_kmip_server "$EVIL" "$TMP/evil.port" "$TMP/evil.log" 200
EP=$DAEMON_PORT
mgr_init "$TMP/m"
mgr_start "$TMP/m"
expect_rc 0 "$VMSEAL" --url "$MURL" --ca "$TMP/m/ca.crt" login --password-file "$TMP/m/admin-password"
for p in "real:$PORT" "evil:$EP"; do
  expect_rc 0 "$VMSEAL" kms add "${p%%:*}" --server "127.0.0.1:${p#*:}"
  expect_rc 0 "$VMSEAL" kms trust "${p%%:*}" --ca "$TMP/k/ca.crt"
  expect_rc 0 "$VMSEAL" kms client-cert "${p%%:*}" --cert "$TMP/k/clients/manager/manager.crt" \
    --key "$TMP/k/clients/manager/manager.key"
done

# --- a real vmseal-kmsd on SQLite: one node
expect_rc 0 "$VMSEAL" --json kms status real
jq -e '.servers[0].kmip_ok and .servers[0].cluster == {"store": "sqlite", "node": "", "facts_age_ms": null,
         "database": null, "standbys": [], "standbys_total": 0, "nodes": [], "nodes_total": 0}' <<< "$OUT" >/dev/null \
  || fail "status of a SQLite kmsd: $OUT"
expect_rc 0 "$VMSEAL" kms status real
grep -q "^Server 127.0.0.1:$PORT: store sqlite (one node)$" <<< "$OUT" || fail "kms status text: $OUT"
ok "a SQLite vmseal-kmsd: status shows store sqlite, one node"

# --- a hostile server
expect_rc 0 "$VMSEAL" --json kms status evil
echo "$OUT" | jq -c '.servers[0] | {vendor, cluster: (.cluster | .nodes |= .[:2])}' | cut -c1-900 | sed 's/^/  /'
jq -e '.servers[0].cluster as $c | .servers[0].vendor == "Evil\\x1b[31m KMS\\nsecond line"
    and $c.store == "postgresql"
    and $c.node == "evil\\x1b]0;owned\\x07\\nFAKE LINE node kms9 alive"
    and $c.facts_age_ms == null
    and $c.database.role == "primary\\x1b[2J\\x1b[H"
    and ($c.database.address | length < 168 and endswith("...") and startswith("AAAA"))
    and $c.database.version == "\\xe2\\x80\\xae51 LQSergtsoP"
    and $c.database.synchronous_commit == "on\\r\\nsynchronous: all fine"
    and $c.database.synchronous_standby_names == "\\xc2\\x85\\xe2\\x80\\xa8x"
    and $c.standbys_total == 1 and ($c.standbys | length == 1)
    and $c.standbys[0].name == "s1\\x1b[5m" and $c.standbys[0].replay_lag_ms == null
    and $c.standbys[0].bytes_behind == 1000000000000000 and $c.standbys[0].sync_state == ""
    and ($c.nodes | length == 16) and $c.nodes_total == 1000000000000000
    and $c.nodes[15].name == "n15" and $c.nodes[15].seen_ago_ms == 15' <<< "$OUT" >/dev/null \
  || fail "hostile facts not escaped or bounded"
LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' <<< "$OUT" && fail "a control character in the JSON"
ok "hostile Server Information: every text escaped and cut to its field, numbers bounded, 16 of 1,000 nodes"

expect_rc 0 "$VMSEAL" kms status evil
printf '%s\n' "$OUT" | head -12 | cut -c1-160 | sed 's/^/  /'
LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' <<< "$OUT" && fail "a control character in kms status"
grep -q '^FAKE LINE\|^synchronous: all fine' <<< "$OUT" && fail "a forged line in kms status"
grep -qF 'node evil\x1b]0;owned\x07\nFAKE LINE node kms9 alive of a cluster' <<< "$OUT" || fail "kms status text: $OUT"
grep -qF '(1000000000000000 nodes in all; 16 shown)' <<< "$OUT" || fail "kms status: node count"
expect_rc 0 "$VMSEAL" kms status real
ok "the CLI shows the hostile facts escaped, one line each; the manager keeps serving"
mgr_stop
kmsd_stop
