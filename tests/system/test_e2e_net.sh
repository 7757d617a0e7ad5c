#!/usr/bin/env bash
# VM networks end to end (kmsd + managerd + hostd + CLI, real QEMU/TCG):
# a user-mode NIC added with `vmseal vm nic add`; the guest gets its address
# by DHCP (busybox udhcpc), fetches a page from an HTTP server this test runs
# on the host's 127.0.0.1 (the guest sees it as the slirp gateway 10.0.2.2),
# and a port forward on 127.0.0.1 reaches busybox httpd inside the guest. The
# MAC stays the same over a hostd restart and a second boot; the events tell
# who added what. Then what a user may not do: bad MACs and ports, a
# privileged, used or foreign forward, a network the host does not define,
# too many NICs, NIC changes while the VM runs, a hand-edited vm.conf.
source "$VMSEAL_SRC/tests/testlib.sh"
source "$VMSEAL_SRC/tests/system/system_lib.sh"

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

base_stack
HOME1=$(stack_vm_home esx1 net1)

# the host's web server (127.0.0.1 only)
HP=$(free_port)
TOKEN=hostpage-$RANDOM$RANDOM
mkdir -p "$TMP/www"
echo "VMSEAL-HOST-PAGE:$TOKEN" > "$TMP/www/index.html"
/usr/bin/python3 -m http.server "$HP" --bind 127.0.0.1 --directory "$TMP/www" >"$TMP/http.log" 2>&1 &
HTTP_PID=$!
at_exit "kill $HTTP_PID 2>/dev/null"
stack_until 20 curl -sf "http://127.0.0.1:$HP/" -o /dev/null || fail "the test's HTTP server did not start"

expect_rc 0 vmseal vm create net1 --host esx1 --kernel vmlinuz --initrd initrd.gz \
  --append "console=ttyS0 quiet"
FP=$(free_port)
GTOK=guestpage-$RANDOM$RANDOM
expect_rc 0 vmseal --json vm nic add net1 --forward "$FP:8080"
MAC=$(jq -r .mac <<<"$OUT")
[[ $MAC =~ ^0a:76:6d:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$ ]] || fail "MAC $MAC is not under the host's prefix 0a:76:6d"
jq -e --arg f "tcp:127.0.0.1:$FP:8080" '.mode == "user" and .forwards == [$f] and .index == 0' <<<"$OUT" >/dev/null ||
  fail "nic add answer: $OUT"
grep -qx "nic0.mac = $MAC" "$HOME1/vm.conf" && grep -qx "nic0.forward = tcp:127.0.0.1:$FP:8080" "$HOME1/vm.conf" &&
  grep -qx "nics = 1" "$HOME1/vm.conf" || { cat "$HOME1/vm.conf" >&2; fail "the NIC is not in vm.conf"; }
expect_rc 0 vmseal --json vm nic ls net1
jq -e --arg m "$MAC" '.nics | length == 1 and .[0].mac == $m' <<<"$OUT" >/dev/null || fail "nic ls: $OUT"
expect_rc 0 vmseal vm info net1
grep -Eq "^NIC 0: +$MAC user, forwards tcp:127.0.0.1:$FP:8080$" <<<"$OUT" || fail "vm info shows no NIC: $OUT"
ok "vmseal vm nic add: user-mode NIC $MAC with a forward 127.0.0.1:$FP -> 8080, recorded in vm.conf"

expect_rc 0 vmseal vm set net1 --append \
  "console=ttyS0 quiet vmseal.net=dhcp vmseal.fetch=10.0.2.2:$HP vmseal.httpd=8080 vmseal.token=$GTOK vmseal.hotplug=1 vmseal.wait=1"
expect_rc 0 vmseal vm start net1
stack_until 240 stack_vm_console_has net1 'VMSEAL-READY' ||
  { stack_vm_console net1 | tail -n 20 >&2; fail "the guest did not come up"; }
con=$(stack_vm_console net1 | tr -d '\r')
grep -qx "VMSEAL-NET-ADDR 10.0.2.15 $MAC" <<<"$con" || { echo "$con" >&2; fail "no DHCP address (or another MAC) in the guest"; }
ok "the guest got 10.0.2.15 by DHCP on NIC $MAC"
grep -qx "VMSEAL-FETCH:VMSEAL-HOST-PAGE:$TOKEN" <<<"$con" || { echo "$con" >&2; fail "the guest did not fetch the host's page"; }
ok "the guest fetched the page of the host's HTTP server (127.0.0.1:$HP, via 10.0.2.2)"
grep -q "^VMSEAL-HTTPD-UP 8080" <<<"$con" || { echo "$con" >&2; fail "busybox httpd did not start in the guest"; }
page=$(curl -sf -m 30 --retry 5 --retry-delay 1 --retry-all-errors "http://127.0.0.1:$FP/") ||
  fail "the port forward 127.0.0.1:$FP does not reach the guest"
[ "$page" = "VMSEAL-GUEST-PAGE:$GTOK" ] || fail "the forward answered $page"
ok "the port forward 127.0.0.1:$FP reaches busybox httpd in the guest"

# hot plug: a user-mode NIC added while the guest runs (QMP netdev_add +
# device_add); the guest sees a new PCI device, brings it up by DHCP on its
# own network (10.0.3.0/24) and the new forward reaches httpd through it
FP2=$(free_port)
expect_rc 0 vmseal --json vm nic add net1 --forward "$FP2:8080"
MAC2=$(jq -r .mac <<<"$OUT")
jq -e '.index == 1' <<<"$OUT" >/dev/null || fail "hot-plugged NIC: $OUT"
stack_until 120 stack_vm_console_has net1 "VMSEAL-NET-ADDR eth1 10.0.3.15 $MAC2" ||
  { stack_vm_console net1 | tail -n 10 >&2; fail "the guest did not bring up the hot-plugged NIC"; }
page=$(curl -sf -m 30 --retry 5 --retry-delay 1 --retry-all-errors "http://127.0.0.1:$FP2/") ||
  fail "the hot-plugged NIC's forward 127.0.0.1:$FP2 does not reach the guest"
[ "$page" = "VMSEAL-GUEST-PAGE:$GTOK" ] || fail "the hot-plugged forward answered $page"
grep -qx "nics = 2" "$HOME1/vm.conf" && grep -qx "nic1.mac = $MAC2" "$HOME1/vm.conf" ||
  fail "the hot-plugged NIC is not in vm.conf"
ok "hot plug: NIC $MAC2 added to the running VM, the guest got 10.0.3.15 on it, its forward 127.0.0.1:$FP2 reaches the guest"

# no NIC removal while running
expect_rc 6 vmseal vm nic rm net1 "$MAC"
grep -q "powered off" <<<"$OUT" || fail "nic rm while running: $OUT"
grep -qx "nics = 2" "$HOME1/vm.conf" || fail "a refused change touched vm.conf"
# a forward to the port a running VM holds is refused (by another VM too)
expect_rc 0 vmseal vm create net2 --host esx1 --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
expect_rc 6 vmseal vm nic add net2 --forward "$FP:80"
grep -q "forwarded to VM net1 already" <<<"$OUT" || fail "a second VM's forward on port $FP: $OUT"
ok "NICs of a running VM cannot be removed (409); its forwarded port is not given to another VM"
expect_rc 0 vmseal vm stop net1
stack_vm_wait_off net1 60 || fail "net1 did not power off"

# stable MAC: over a host agent restart and a second boot
stack_hostd_stop esx1
stack_hostd_start esx1
expect_rc 0 vmseal --json vm nic ls net1
[ "$(jq -r '.nics[0].mac' <<<"$OUT")" = "$MAC" ] || fail "the MAC changed over a hostd restart: $OUT"
expect_rc 0 vmseal vm set net1 --append "console=ttyS0 quiet vmseal.net=dhcp"
out=$(stack_vm_boot esx1 net1) || fail "second boot"
grep -qx "VMSEAL-NET-ADDR 10.0.2.15 $MAC" <<<"$out" || { echo "$out" >&2; fail "second boot: another MAC or no address"; }
ok "the MAC stays $MAC over a hostd restart and a second boot"

# --- what may not be done (the VM is off) ---
bad() { # EXIT PATTERN ARGS...: vmseal vm nic add ARGS must fail so
  local rc=$1 pat=$2; shift 2
  expect_rc "$rc" vmseal vm nic add "$@"
  grep -Eq "$pat" <<<"$OUT" || fail "vm nic add $*: $OUT"
}
bad 2 "unicast MAC" net2 --mac 01:00:5e:00:00:01
bad 2 "unicast MAC" net2 --mac 00:00:00:00:00:00
bad 2 "unicast MAC|mac" net2 --mac 0a:76:6d:zz:00:01
bad 2 "." net2 --mac 0a:76:6d:00:00:011
bad 2 "not a privileged" net2 --forward 80:80
bad 2 "not a privileged" net2 --forward 1023:80
bad 2 "not a privileged" net2 --forward 70000:80
bad 2 "guest port" net2 --forward 18080:0
bad 2 "guest port" net2 --forward 18080:65536
bad 2 "forward_addresses" net2 --forward 10.9.8.7:18080:80
bad 2 "forward_addresses" net2 --forward 0.0.0.0:18080:80
bad 2 "IPv4" net2 --forward 127.0.0.1.5:18080:80
bad 2 "twice" net2 --forward 18080:80 --forward 18080:81
bad 2 "defines no network" net2 --network nosuch
bad 2 "network" net2 --network 'bad;name'
bad 6 "in use" net2 --forward "$HP:80"
bad 6 "VM net1's already" net2 --mac "$MAC"
ok "refused: multicast/zero/malformed MACs, privileged or out-of-range ports, forwards on other host addresses, a port twice, an undefined network, a port in use, another VM's MAC"
nine=()
for p in $(seq 20000 20008); do nine+=(--forward "$p:80"); done
bad 2 "forwards" net2 "${nine[@]}"
for i in 1 2 3 4; do expect_rc 0 vmseal vm nic add net2; done
bad 2 "4 NICs already" net2
expect_rc 0 vmseal --json vm nic ls net2
[ "$(jq '.nics | length' <<<"$OUT")" = 4 ] || fail "net2 should have 4 NICs: $OUT"
[ "$(jq '[.nics[].mac] | unique | length' <<<"$OUT")" = 4 ] || fail "MACs not unique: $OUT"
M2=$(jq -r '.nics[1].mac' <<<"$OUT")
expect_rc 0 vmseal vm nic rm net2 "$M2"
expect_rc 0 vmseal --json vm nic ls net2
jq -e --arg m "$M2" '(.nics | length == 3) and ([.nics[].mac] | index($m) == null)' <<<"$OUT" >/dev/null ||
  fail "nic rm: $OUT"
expect_rc 4 vmseal vm nic rm net2 "$M2"
ok "at most 4 NICs per VM, each MAC its own; nic rm removes the one named (again: not found)"

# a hand-edited vm.conf: the host's rules hold at power-on too
H2=$(stack_vm_home esx1 net2)
cp "$H2/vm.conf" "$TMP/vm.conf.net2"
sed -i 's/^nic0.mode = user$/nic0.mode = bridge\nnic0.network = nosuch/' "$H2/vm.conf"
stack_hostd_stop esx1
stack_hostd_start esx1
expect_rc 2 vmseal vm start net2
grep -q "defines no network nosuch" <<<"$OUT" || fail "power-on with an undefined network: $OUT"
cp "$TMP/vm.conf.net2" "$H2/vm.conf"
sed -i 's/^nic0.mode = user$/nic0.mode = user\nnic0.forward = tcp:10.9.8.7:19999:22/' "$H2/vm.conf"
stack_hostd_stop esx1
stack_hostd_start esx1
expect_rc 2 vmseal vm start net2
grep -q "may not bind host address 10.9.8.7" <<<"$OUT" || fail "power-on with a foreign forward address: $OUT"
cp "$TMP/vm.conf.net2" "$H2/vm.conf"
sed -i 's/^nic0.mode = user$/nic0.mode = user\nnic0.forward = tcp:127.0.0.1:22:22/' "$H2/vm.conf"
stack_hostd_stop esx1
stack_hostd_start esx1
grep -q "skipping .*/net2: .*nic0.forward: tcp:127.0.0.1:22:22: the host port" "$STACK_DIR/esx1/hostd.log" ||
  { tail -n 5 "$STACK_DIR/esx1/hostd.log" >&2; fail "a privileged forward in vm.conf was accepted"; }
cp "$TMP/vm.conf.net2" "$H2/vm.conf"
stack_hostd_stop esx1
stack_hostd_start esx1
ok "a hand-edited vm.conf cannot name an undefined network, a foreign or a privileged forward"

expect_rc 0 vmseal --json events --since 0
jq -e --arg m "$MAC" --arg m2 "$MAC2" 'map(select(.action == "vm.nic-add" and .object == "net1")) | length == 2 and .[0].new.mac == $m and .[1].new.mac == $m2 and .[0].user == "administrator"' \
  <<<"$OUT" >/dev/null || { jq 'map(select(.action | startswith("vm.nic")))' <<<"$OUT" >&2; fail "vm.nic-add event"; }
jq -e --arg m "$M2" 'map(select(.action == "vm.nic-remove" and .object == "net2")) | length == 1 and .[0].old.mac == $m' \
  <<<"$OUT" >/dev/null || fail "vm.nic-remove event"
ok "events vm.nic-add and vm.nic-remove with the NIC"

finish
