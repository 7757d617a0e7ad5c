#!/usr/bin/env python3
"""Compare what a syslog collector received with the manager's event log.

usage: syslog_check.py DB RECEIVED HOSTNAME [--first ID] [--last ID] [--wait]

RECEIVED holds one raw RFC 5424 message per line (rsyslog's %rawmsg%).
Every message must be exactly the one built here, independently of the
manager's code, from the event row with its id (PRI, time, hostname,
MSGID, structured data with RFC 5424 escaping, BOM, old/new JSON). The ids
must be FIRST..LAST (default: the first id received .. the last in the
database), each once, in order.
--wait: only say (exit 0/1, quietly) whether the message for LAST is there.
"""
import datetime
import sqlite3
import sys


def esc(v):
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def expected(row, hostname):
    (id_, time_, user, source, action, obj, old, new, result, hash_) = row
    pri = 10 * 8 + (5 if result == "ok" else 4)
    ts = datetime.datetime.fromtimestamp(int(time_), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sd = f'[vmseal@32473 id="{id_}" user="{esc(user)}" source="{esc(source)}" object="{esc(obj)}" ' \
         f'result="{esc(result)}"'
    if hash_ is not None:
        sd += f' hash="{esc(hash_)}"'
    sd += "]"
    msg = f"<{pri}>1 {ts} {hostname} vmseal-managerd - {action} {sd} \ufeffold={old or 'null'} " \
          f"new={new or 'null'}"
    return msg.encode()


def main():
    args = sys.argv[1:]
    wait = "--wait" in args
    if wait:
        args.remove("--wait")
    first = last = None
    for opt in ("--first", "--last"):
        if opt in args:
            i = args.index(opt)
            v = int(args[i + 1])
            del args[i:i + 2]
            if opt == "--first":
                first = v
            else:
                last = v
    db, received, hostname = args
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    rows = {r[0]: r for r in con.execute(
        "SELECT id, time, user_name, source, action, object, old_value, new_value, result, hash "
        "FROM events ORDER BY id")}
    con.close()
    if last is None:
        last = max(rows) if rows else 0
    try:
        with open(received, "rb") as f:
            lines = [l for l in f.read().split(b"\n") if l]
    except FileNotFoundError:
        lines = []
    ids = []
    for l in lines:
        try:
            ids.append(int(l.split(b' id="', 1)[1].split(b'"', 1)[0]))
        except (IndexError, ValueError):
            ids.append(None)
    if wait:
        return 0 if last in ids else 1
    if first is None:
        first = ids[0] if ids and ids[0] is not None else 1
    want = list(range(first, last + 1))
    if ids != want:
        print(f"received ids {ids}\nexpected     {want}", file=sys.stderr)
        return 1
    for id_, line in zip(ids, lines):
        exp = expected(rows[id_], hostname)
        if line != exp:
            print(f"event {id_}:\n  got  {line!r}\n  want {exp!r}", file=sys.stderr)
            return 1
    print(f"{len(ids)} messages, ids {first}..{last}, each as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
