#!/usr/bin/env python3
"""Every CLI verb the manager's access table names (column "cli" of
`vmseal-managerd api-table`) is one `vmseal --help` documents, so the table
(and docs/api.md, made from it) never sends a user to a command that does
not exist.

usage: cli_verbs.py TABLE.json HELP.txt    (HELP.txt: `vmseal --help`)

A verb "GROUP SUB [--opt]" is found when a usage block of the help (a line
"  GROUP ..." and the more-indented lines after it) lists SUB right after
GROUP or after a "|", and every --opt appears in that block."""
import json
import re
import sys

table = json.load(open(sys.argv[1]))
help_lines = open(sys.argv[2]).read().splitlines()

blocks = []   # (group, text)
for line in help_lines:
    m = re.match(r"^  (\(also as: )?([a-z][a-z-]*)\b(.*)$", line)
    if m and not line.startswith("   "):
        rest = m.group(3)
        if m.group(1):
            # "(also as: kms key ls|info|cleanup)": GROUP SUB SUB...
            words = rest.strip(" )").split(" ", 1)
            blocks.append((m.group(2), words[0] + " " + " | ".join(words[1].split("|"))))
        else:
            blocks.append((m.group(2), rest))
    elif line.startswith("   ") and blocks:
        g, t = blocks[-1]
        blocks[-1] = (g, t + " " + line.strip())


def found(verb):
    words = verb.split()
    group, subs = words[0], [w for w in words[1:] if not w.startswith("-") and not w.isupper()]
    opts = [w for w in words[1:] if w.startswith("-")]
    g_re = re.escape(group)
    for g, text in blocks:
        full = g + " " + text
        if subs:
            sub = re.escape(" ".join(subs))
            ok = (g == group and re.search(r"(^\s*|\|\s*|^\s*key\s+)" + sub + r"(\s|$|\|)", text)) \
                or re.search(r"\|\s*" + g_re + r"\s+" + sub + r"(\s|$|\|)", full)
        else:
            ok = re.search(r"(^|\|\s*)" + g_re + r"(\s|$)", full)
        if ok and all(o in full for o in opts):
            return True
    return False


failures = []
for op in table["operations"]:
    cli = op.get("cli")
    if not cli:
        continue
    for verb in cli.split(" | "):
        if not found(verb.strip()):
            failures.append("%s: `vmseal %s` is not in `vmseal --help`" % (op["id"], verb.strip()))
for f in failures:
    print("FAIL", f)
checked = sum(len(op["cli"].split(" | ")) for op in table["operations"] if op.get("cli"))
print("%d CLI verbs of the access table checked, %d missing" % (checked, len(failures)))
sys.exit(1 if failures else 0)
