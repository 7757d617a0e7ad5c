#!/usr/bin/env bash
# The vm.conf schema has one home (lib/conf/vmrecord.c): no key of it is
# spelled by hand in vmseal-hostd, vmseal-crypto-util or the CLI, and none of
# them reads or writes vm.conf entries through the key = value layer
# (hostd/main.c reads hostd.conf with it, which is allowed). Fails naming the
# file and line when someone adds one back. The scanner is checked first on
# files that break each rule, so this test can fail.
source "$VMSEAL_SRC/tests/testlib.sh"

scan() { # FILE... : prints "file:line: what" per finding
  "$PY" - "$@" <<'PYEOF'
import re, sys

# schema keys inside string literals
KEY_RES = [
    re.compile(r'disk(%[^"]*|[0-9]+)\.(file|size|luks|keysafe|next|old|rekeyed)'),
    re.compile(r'(config\.version|vm\.keysafe|vm\.next\.keysafe|nvram\.(file|next\.file|old\.file|rekeyed)|op\.kek)'),
    re.compile(r'\.(luks\.uuid|next\.file|old\.file|next\.keysafe|next\.luks|rekeyed)\b'),
    re.compile(r'nic(%[^"]*|[0-9]+)\.(mac|mode|network|forward)'),
]
# entry access through the key = value layer
KV_CALL = re.compile(r'\bvmseal_vmconf_(get|get_u64|set|setf|unset|unset_prefix|count|key_at|value_at|line_at|line_of)\s*\(')
ALLOW_KV = ('hostd/main.c',)   # hostd.conf, not vm.conf

def strip_comments(text):
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append('\n' * text.count('\n', i, j))
            i = j
        elif text.startswith('//', i):
            j = text.find('\n', i)
            i = n if j < 0 else j
        elif text[i] in '"\'':
            q, j = text[i], i + 1
            while j < n and text[j] != q:
                j += 2 if text[j] == '\\' else 1
            out.append(text[i:j + 1])
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return ''.join(out)

LIT = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
found = 0
for path in sys.argv[1:]:
    code = strip_comments(open(path, encoding='utf-8', errors='replace').read())
    for no, line in enumerate(code.split('\n'), 1):
        for lit in LIT.findall(line):
            for r in KEY_RES:
                m = r.search(lit)
                if m:
                    print(f'{path}:{no}: vm.conf key "{m.group(0)}" spelled by hand in "{lit}"')
                    found += 1
                    break
        if not path.endswith(ALLOW_KV) and KV_CALL.search(line):
            print(f'{path}:{no}: vm.conf entries through the key = value layer: {line.strip()}')
            found += 1
print(f'{found} finding(s)', file=sys.stderr)
PYEOF
}

# --- the scanner finds what it must -------------------------------------------
mkdir -p "$TMP/hostd"
cat > "$TMP/hostd/bad.c" <<'C'
/* "disk0.keysafe" in a comment is fine */
static void f(vmseal_vmconf *c, size_t i) {
    char k[32];
    snprintf(k, sizeof(k), "disk%zu.luks.uuid", i);
    const char *a = vmseal_vmconf_get(c, "op");
    puts("vm.keysafe"); puts("nvram.next.file"); puts("x.rekeyed");
    puts("disk%d%s.keysafe"); puts("config.version");
    snprintf(k, sizeof(k), "nic%zu.forward", i);
}
C
scan "$TMP/hostd/bad.c" > "$TMP/bad.out" 2>/dev/null
n=$(wc -l < "$TMP/bad.out")
[ "$n" -eq 8 ] || { cat "$TMP/bad.out" >&2; fail "the scanner found $n of 8 planted violations"; }
grep -q 'bad.c:1:' "$TMP/bad.out" && fail "the scanner flagged a comment"
grep -q 'bad.c:5: vm.conf entries through the key = value layer' "$TMP/bad.out" || fail "kv call not named"
# the schema module itself is full of keys: proof the patterns match real code
k=$(scan "$VMSEAL_SRC/lib/conf/vmrecord.c" 2>/dev/null | wc -l)
[ "$k" -ge 10 ] || fail "the scanner sees only $k keys in lib/conf/vmrecord.c"
grep -q 'bad.c:8: vm.conf key "nic%zu.forward"' "$TMP/bad.out" || fail "a NIC key not named"
ok "the scanner finds keys spelled by hand and entry access (not comments)"

# --- the programs ---------------------------------------------------------------
cd "$VMSEAL_SRC"
files=$(ls hostd/*.c hostd/*.h crypto-util/*.c crypto-util/*.h cli/*.c cli/*.h 2>/dev/null)
scan $files > "$TMP/real.out" 2>/dev/null
if [ -s "$TMP/real.out" ]; then
  cat "$TMP/real.out" >&2
  fail "vm.conf keys outside the schema module (use include/vmseal/vmrecord.h)"
fi
ok "no vm.conf key spelled by hand in hostd/, crypto-util/, cli/ ($(echo $files | wc -w) files)"
