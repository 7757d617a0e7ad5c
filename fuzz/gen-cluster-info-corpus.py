#!/usr/bin/env python3
"""Regenerate fuzz/corpus/kmip_cluster_info/: Server Information items as
vmseal-kmsd sends them (PostgreSQL with standbys and nodes, SQLite, the
database unavailable), hostile variants (escapes, long texts, wrong types,
negative numbers, many nodes) and one whole Query response message. The
corpus is committed; run this only to refresh it."""
import os
import struct
import sys

STRUCT, INT, LONG, ENUM, TEXT = 1, 2, 3, 5, 7
X = {n: 0x54C000 + i for i, n in enumerate(
    "_ store node facts_age database role address version error sync_commit sync_names standby "
    "name state sync_state replay_lag bytes_behind cluster_node seen_ago standbys_total "
    "nodes_total".split()) if i}
SERVER_INFORMATION = 0x420088


def item(tag, typ, value):
    if typ == STRUCT:
        body = b"".join(value)
    elif typ == INT or typ == ENUM:
        body = struct.pack(">i" if typ == INT else ">I", value) + b"\0" * 4
        return struct.pack(">I", tag)[1:] + bytes([typ]) + struct.pack(">I", 4) + body
    elif typ == LONG:
        body = struct.pack(">q", value)
    else:
        body = value.encode() if isinstance(value, str) else value
    pad = (8 - len(body) % 8) % 8
    return struct.pack(">I", tag)[1:] + bytes([typ]) + struct.pack(">I", len(body)) + body + b"\0" * pad


def t(name, v): return item(X[name], TEXT, v)
def l(name, v): return item(X[name], LONG, v)
def i32(name, v): return item(X[name], INT, v)
def s(name, *kids): return item(X[name], STRUCT, list(kids))
def si(*kids): return item(SERVER_INFORMATION, STRUCT, list(kids))


def node(name, state="alive", seen=700):
    return s("cluster_node", t("name", name), t("address", name + ".example:5696"),
             t("version", "0.1.0"), t("state", state), l("seen_ago", seen))


pg = si(t("store", "postgresql"), t("node", "kms1"), l("facts_age", 412),
        s("database", t("role", "primary"), t("address", "127.0.0.1:5432"), t("version", "15.8"),
          t("sync_commit", "on"), t("sync_names", "s1")),
        i32("standbys_total", 1),
        s("standby", t("name", "s1"), t("state", "streaming"), t("sync_state", "sync"),
          l("replay_lag", 0), l("bytes_behind", 0)),
        i32("nodes_total", 2), node("kms1"), node("kms2", "gone", 9000))
out = {
    "kmsd-pg.bin": pg,
    "kmsd-sqlite.bin": si(t("store", "sqlite")),
    "kmsd-db-down.bin": si(t("store", "postgresql"), t("node", "kms2"), l("facts_age", 1500),
                           s("database", t("role", "unavailable"),
                             t("error", "store: database unavailable: connection refused"))),
    "hostile-text.bin": si(t("store", "postgresql\x1b[2J"), t("node", "a\nnode kms9 alive"),
                           s("database", t("role", "\u202eyramirp"), t("address", "A" * 3000),
                             t("error", "\u00e9" * 500)),
                           s("standby", t("name", "s\x7f\u2028"), t("state", "\t"))),
    "hostile-types.bin": si(t("store", "postgresql"), t("facts_age", "12"), l("node", 5),
                            t("database", "x"), l("nodes_total", -(2 ** 63)),
                            s("standby", l("name", 1), t("replay_lag", "1"), l("bytes_behind", 2 ** 62)),
                            t("cluster_node", "n"), item(0x54AB01, TEXT, "other vendor")),
    "many-nodes.bin": si(t("store", "postgresql"), i32("nodes_total", 3),
                         *[node("n%d" % k) for k in range(40)]),
}
# a whole Query response: Response Message > Batch Item > Response Payload
hdr = item(0x42007A, STRUCT, [item(0x420069, STRUCT, [item(0x42006A, INT, 1), item(0x42006B, INT, 4)]),
                              item(0x420092, 9, struct.pack(">q", 0)), item(0x42000D, INT, 1)])
payload = item(0x42007C, STRUCT, [item(0x42005C, ENUM, 0x18),
                                  item(0x42009D, TEXT, "vmseal vmseal-kmsd 0.1.0"), pg])
batch = item(0x42000F, STRUCT, [item(0x42005C, ENUM, 0x18), item(0x42007F, ENUM, 0), payload])
out["query-response.bin"] = item(0x42007B, STRUCT, [hdr, batch])

d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "kmip_cluster_info")
os.makedirs(d, exist_ok=True)
for name, data in out.items():
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
print(len(out))
