#!/usr/bin/env bash
# One KMIP client must not be able to make vmseal-kmsd hold much locked
# memory: stalled large messages, floods of key-material values, huge
# batches, more Gets than a connection may hold. VmLck stays under the
# configured max_locked_memory and another client is served throughout.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/kmsd/kmsd_lib.sh"

kmsd_init "$TMP/k"
cat >> "$TMP/k/kmsd.conf" <<EOC
max_locked_memory = 16M
max_connection_secrets = 32
EOC
kmsd_start "$TMP/k"
timeout 240 $PY "$KTESTS/hostile_memory.py" "$TMP/k" "$PORT" "$KPID" $((16 << 10)) 32 \
  || { tail -20 "$KLOG"; fail "hostile client"; }
kill -0 "$KPID" || fail "server died"
grep -q "server busy: the secure memory for large messages is in use" "$KLOG" || fail "busy refusals not logged"
grep -q "key-material values; at most 16 are accepted" "$KLOG" || fail "value flood not logged"
grep -q 'op=- uid="" result=Failed reason="the request has 1000 batch items' "$TMP/k/audit.log" \
  || fail "batch refusal not audited"
ok "hostile client: locked memory bounded, refusals logged and audited, others served"

# configuration: the bounds must leave room for one message
sed -i 's/^max_locked_memory = .*/max_locked_memory = 2M/' "$TMP/k/kmsd.conf"
kmsd_stop
! "$KMSD" -c "$TMP/k" grants >/dev/null 2>"$TMP/err" || fail "max_locked_memory below one connection accepted"
grep -q "max_locked_memory (2097152) is below max_connection_locked_memory" "$TMP/err" || fail "unclear: $(cat "$TMP/err")"
sed -i 's/^max_locked_memory = .*/max_locked_memory = 64M/' "$TMP/k/kmsd.conf"
echo "max_connection_locked_memory = 1M" >> "$TMP/k/kmsd.conf"
! "$KMSD" -c "$TMP/k" grants >/dev/null 2>"$TMP/err" || fail "max_connection_locked_memory below a message accepted"
grep -q "must be at least max_message_size + 256 KiB" "$TMP/err" || fail "unclear: $(cat "$TMP/err")"
ok "bounds that leave no room for one message are refused"
