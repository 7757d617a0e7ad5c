#!/usr/bin/env bash
# End to end: interactive consoles through the manager (issue 11, Consoles).
# One encrypted VM boots into a shell on its serial port; then:
#   - `vmseal vm console` on a pseudo-terminal types a command into the
#     guest's shell and reads the answer; Ctrl-] detaches;
#   - the sealed console log still holds the session (read through the
#     manager), and the files on the host hold none of it in clear;
#   - a user without Cryptographer.Access gets 403 (CLI exit 5, an event);
#   - hostile websocket clients get a close frame and change nothing;
#   - four consoles at once see the same output, a fifth gets 429;
#   - the VNC display answers with the RFB greeting through the websocket,
#     also through `vmseal vm vnc --listen`;
#   - a VM without encryption has the same console; its clear serial.log
#     (written by QEMU) keeps the session;
#   - powering the VM off closes an attached console.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"

base_stack
check() { /usr/bin/python3 "$VMSEAL_SRC/tests/system/console_check.py" "$STACK_URL" "$STACK_CA" "$@"; }
ADMINPW=$STACK_DIR/manager/admin-password

expect_rc 0 vmseal vm create con1 --host esx1 --encrypt --disk 8 \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet vmseal.shell=1"
expect_rc 0 vmseal vm create plain1 --host esx1 --no-encrypt
expect_rc 6 vmseal vm console con1      # not running: 409
grep -q "no serial console running" <<<"$OUT" || fail "console of a VM that is off: $OUT"
expect_rc 6 vmseal vm console plain1    # the same for a VM without encryption
grep -q "no serial console running" <<<"$OUT" || fail "console of a VM that is off: $OUT"
expect_rc 0 vmseal vm start con1
stack_until 300 stack_vm_console_has con1 VMSEAL-SHELL-READY || fail "the guest's shell did not start"
ok "encrypted VM con1 runs a shell on its serial port"

# a user at a terminal
/usr/bin/python3 "$VMSEAL_SRC/tests/system/console_pty.py" 'echo vmseal-$((6*7))-console' \
  vmseal-42-console "$STACK_CLI" vm console con1 || fail "vmseal vm console on a pty"
ok "vmseal vm console: a command typed on a terminal runs in the guest, its answer comes back"

# the sealed log kept the session; nothing of it in clear on the host
stack_until 30 stack_vm_console_has con1 'vmseal-42-console' || fail "the session is not in the sealed log"
H=$(stack_vm_home esx1 con1)
ls "$H"/serial-*.vmslog >/dev/null || fail "no sealed log segment"
if grep -a -r -q 'vmseal-42-console' "$H"; then fail "console text in clear in the VM home"; fi
[ ! -e "$H/serial.log" ] || fail "a clear serial.log appeared"
[ -S "$H/run-esx1/vnc.sock" ] || fail "no vnc.sock in the VM home's run folder run-esx1"
if ss -ltnp 2>/dev/null | grep -q "pid=$(cat "$H/run-esx1/qemu.pid")," ; then fail "QEMU listens on TCP"; fi
vmseal --json events --action vm.console | jq -e 'map(select(.object == "con1" and .result == "ok")) | length >= 1' \
  >/dev/null || fail "no vm.console event"
ok "the sealed log holds the session, the VM home holds no clear text, QEMU has no TCP port; an event per console"

# without Cryptographer.Access: refused, audited
printf 'bobpassword1\n' > "$TMP/bobpw"
expect_rc 0 vmseal user add bob --role NoCryptoAdmin --password-file "$TMP/bobpw"
bob() { XDG_CONFIG_HOME=$TMP/bob "$STACK_CLI" "$@"; }
bob --url "$STACK_URL" --ca "$STACK_CA" login bob --password-file "$TMP/bobpw" >/dev/null || fail "bob login"
rc=0; OUT=$(bob vm console con1 </dev/null 2>&1) || rc=$?
[ $rc -eq 5 ] || fail "bob's console: exit $rc, expected 5: $OUT"
grep -q "lacks the Cryptographer.Access privilege on vm:con1" <<<"$OUT" || fail "bob's console message: $OUT"
check bob "$TMP/bobpw" refused con1 403 Cryptographer.Access console || fail "bob's websocket"
check bob "$TMP/bobpw" refused con1 403 Cryptographer.Access vnc || fail "bob's VNC websocket"
vmseal --json events --result denied --user bob --action vm.console | jq -e 'length >= 2' >/dev/null ||
  fail "no denied event for bob's console"
ok "no Cryptographer.Access: the console of an encrypted VM is refused (403, CLI exit 5), with a denied event"

# hostile websocket clients
check administrator "$ADMINPW" handshake con1 || fail "bad upgrade requests"
check administrator "$ADMINPW" cross-site con1 || fail "cross-site websocket with the web cookie"
check administrator "$ADMINPW" hostile con1 || fail "hostile frames"
check administrator "$ADMINPW" shell con1 'echo still-$((1+1))-alive' still-2-alive || fail "console after the attacks"
! stack_vm_is_off con1 || fail "con1 is not running any more"
ok "hostile websocket clients get a close frame (1002/1009); the console and the guest carry on"

# limits: 4 consoles per VM at once, same output to each
check administrator "$ADMINPW" limit con1 4 || fail "console limit"
ok "four consoles at once share the output; the fifth is refused (429)"

# VNC: the RFB greeting through the manager's websocket, and through the CLI's local port
check administrator "$ADMINPW" rfb con1 || fail "VNC websocket"
vmseal vm vnc con1 --listen 127.0.0.1:0 > "$TMP/vnc.out" 2>&1 &
vncpid=$!
stack_until 30 grep -q "connect a viewer" "$TMP/vnc.out" || fail "vmseal vm vnc did not listen: $(cat "$TMP/vnc.out")"
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/vnc.out")
greet=$(/usr/bin/python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
b = b""
while b"\n" not in b:
    d = s.recv(100)
    if not d: break
    b += d
sys.stdout.write(b.decode(errors="replace"))
' "$port")
wait $vncpid || fail "vmseal vm vnc exit status"
[ "$greet" = "RFB 003.008" ] || fail "greeting through vmseal vm vnc: $greet"
ok "VNC: the RFB greeting through the websocket and through vmseal vm vnc --listen"

# a VM without encryption: QEMU keeps its clear serial.log, the console works the same
expect_rc 0 vmseal vm create plain2 --host esx1 --no-encrypt \
  --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet vmseal.shell=1"
expect_rc 0 vmseal vm start plain2
stack_until 300 stack_vm_console_has plain2 VMSEAL-SHELL-READY || fail "plain2's shell did not start"
check administrator "$ADMINPW" shell plain2 'echo plain-$((3*3))-console' plain-9-console || fail "plain2's console"
stack_until 30 grep -aq plain-9-console "$(stack_vm_home esx1 plain2)/serial.log" || fail "plain2's serial.log lacks the session"
expect_rc 0 vmseal vm stop plain2
ok "a VM without encryption: interactive console too; its serial.log (clear, as before) keeps the session"

# a console stays attached while the VM powers off: it is closed, with the reason
check administrator "$ADMINPW" until-close con1 "powered off" > "$TMP/uc.out" 2>&1 &
ucpid=$!
stack_until 60 grep -q READY "$TMP/uc.out" || fail "console for the power-off: $(cat "$TMP/uc.out")"
expect_rc 0 vmseal vm stop con1
wait $ucpid || fail "attached console at power-off: $(cat "$TMP/uc.out")"
ok "powering the VM off closes its attached console, saying why"
finish
