#!/usr/bin/env bash
# A bridged NIC end to end: the test makes a bridge on the host and a network
# namespace joined to it by a veth pair (the "LAN"); hostd.conf defines the
# network `lan` on that bridge. `vmseal vm nic add --network lan` gives the
# VM a NIC; at power-on hostd creates the tap, puts it on the bridge and
# hands QEMU the descriptor (QEMU's command line names fd=N, never a tap
# name). The guest (static address) fetches a page from a server in the
# namespace, and the namespace reaches busybox httpd in the guest. The tap
# goes with QEMU. A network whose bridge is missing fails at power-on;
# forwards on a bridged NIC are refused. Needs root (CAP_NET_ADMIN).
source "$VMSEAL_SRC/tests/testlib.sh"

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || [ ! -c /dev/net/tun ]; then
  echo "1..0 # SKIP needs root, iproute2 and /dev/net/tun"
  exit 77
fi
sfx=$(( $$ % 100000 ))
BR=vmsbr$sfx NS=vmsns$sfx VH=vmsvh$sfx VP=vmsvp$sfx
ip link add "$BR" type bridge 2>/dev/null || { echo "1..0 # SKIP cannot create a bridge here"; exit 77; }
at_exit "ip link del $BR 2>/dev/null; ip link del $VH 2>/dev/null; ip netns del $NS 2>/dev/null"
ip link set "$BR" up
ip netns add "$NS"
ip link add "$VH" type veth peer name "$VP"
ip link set "$VP" netns "$NS"
ip link set "$VH" master "$BR" up
ip -n "$NS" link set lo up
ip -n "$NS" addr add 192.168.213.1/24 dev "$VP"
ip -n "$NS" link set "$VP" up

source "$VMSEAL_SRC/tests/system/system_lib.sh"
stack_kmsd_setup kms1
stack_kmsd_start kms1
stack_managerd_setup
stack_managerd_start
stack_login
stack_kms_add prov1 kms1
stack_hostd_setup esx1
{
  echo "network.lan.bridge = $BR"
  echo "network.gone.bridge = nobr$sfx"
} >> "$STACK_DIR/esx1/hostd.conf"
stack_hostd_start esx1

# the LAN's web server, inside the namespace
TOKEN=lanpage-$RANDOM$RANDOM
mkdir -p "$TMP/www"
echo "VMSEAL-LAN-PAGE:$TOKEN" > "$TMP/www/index.html"
ip netns exec "$NS" /usr/bin/python3 -m http.server 8000 --bind 192.168.213.1 --directory "$TMP/www" \
  >"$TMP/http.log" 2>&1 &
HTTP_PID=$!
at_exit "kill $HTTP_PID 2>/dev/null"
stack_until 20 ip netns exec "$NS" curl -sf http://192.168.213.1:8000/ -o /dev/null ||
  fail "the LAN's HTTP server did not start"

expect_rc 0 vmseal vm create br1 --host esx1 --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
expect_rc 2 vmseal vm nic add br1 --network lan --forward 18080:80
grep -q "mode user only" <<<"$OUT" || fail "a forward on a bridged NIC: $OUT"
expect_rc 2 vmseal vm nic add br1 --network wan
grep -q "defines no network wan" <<<"$OUT" || fail "an undefined network: $OUT"
expect_rc 0 vmseal --json vm nic add br1 --network lan
MAC=$(jq -r .mac <<<"$OUT")
jq -e '.mode == "bridge" and .network == "lan"' <<<"$OUT" >/dev/null || fail "nic add: $OUT"
ok "bridged NIC $MAC on network lan (undefined network and forwards refused)"

GTOK=guest-$RANDOM$RANDOM
expect_rc 0 vmseal vm set br1 --append \
  "console=ttyS0 quiet vmseal.ip=192.168.213.2/24 vmseal.fetch=192.168.213.1:8000 vmseal.httpd=8080 vmseal.token=$GTOK vmseal.wait=1"
expect_rc 0 vmseal vm start br1
stack_until 240 stack_vm_console_has br1 'VMSEAL-READY' ||
  { stack_vm_console br1 | tail -n 20 >&2; fail "the guest did not come up"; }
con=$(stack_vm_console br1 | tr -d '\r')
grep -qx "VMSEAL-NET-ADDR 192.168.213.2 $MAC" <<<"$con" || { echo "$con" >&2; fail "guest address/MAC"; }
grep -qx "VMSEAL-FETCH:VMSEAL-LAN-PAGE:$TOKEN" <<<"$con" || { echo "$con" >&2; fail "the guest did not fetch the LAN's page"; }
ok "the guest on the bridge fetched the page of a server in the namespace"
page=$(ip netns exec "$NS" curl -sf -m 30 --retry 5 --retry-delay 1 --retry-all-errors http://192.168.213.2:8080/) ||
  fail "the namespace does not reach the guest"
[ "$page" = "VMSEAL-GUEST-PAGE:$GTOK" ] || fail "the guest answered $page"
ok "the namespace reaches busybox httpd in the guest over the bridge"

HOME1=$(stack_vm_home esx1 br1)
QPID=$(cat "$HOME1"/run-esx1/qemu.pid)
taps=$(ls "/sys/class/net/$BR/brif/" | grep '^vmseal' || true)
[ "$(wc -w <<<"$taps")" = 1 ] || fail "expected one vmseal tap on $BR, found: $taps"
tr '\0' ' ' < "/proc/$QPID/cmdline" | grep -q -- "-netdev tap,id=vmseal-net0,fd=[0-9]" ||
  fail "QEMU's command line does not take the tap as a descriptor: $(tr '\0' ' ' < /proc/$QPID/cmdline)"
if tr '\0' ' ' < "/proc/$QPID/cmdline" | grep -q "ifname=\|script=\|helper="; then
  fail "QEMU was asked to make or configure a tap itself"
fi
grep -q "TUNSETIFF\|/dev/net/tun" "/proc/$QPID/cmdline" && fail "QEMU names /dev/net/tun"
ok "hostd made tap $taps on $BR; QEMU got it as a descriptor (no ifname, script or helper)"

expect_rc 6 vmseal vm nic rm br1 "$MAC"
expect_rc 6 vmseal vm nic add br1 --network lan
grep -q "powered off to add a bridged NIC" <<<"$OUT" || fail "bridged NIC added while running: $OUT"
grep -qx "nics = 1" "$HOME1/vm.conf" || fail "a refused hot plug touched vm.conf"
expect_rc 0 vmseal vm stop br1
stack_vm_wait_off br1 60 || fail "br1 did not power off"
stack_until 20 bash -c "! ls /sys/class/net/$BR/brif/ | grep -q '^vmseal'" ||
  fail "the tap outlived QEMU: $(ls /sys/class/net/$BR/brif/)"
ok "the tap went with QEMU"

# a network hostd.conf defines on a bridge that is not there: power-on fails
expect_rc 0 vmseal vm create br2 --host esx1 --kernel vmlinuz --initrd initrd.gz --append "console=ttyS0 quiet"
expect_rc 0 vmseal vm nic add br2 --network gone
expect_rc 2 vmseal vm start br2
grep -q "nobr$sfx is not a bridge" <<<"$OUT" || fail "power-on on a missing bridge: $OUT"
stack_vm_is_off br2 || fail "br2 runs without its bridge"
ok "a network whose bridge is missing: power-on refused"

finish
