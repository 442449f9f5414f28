"""The relay-trick corpus, profiles/relay_tricks.def, as the integration tests see
it: the same file relayvisord compiles in for `relayvisorctl audit` and
`check --corpus`. Each TRICK(class, helo, mail, rcpt, stranger) line becomes a
Case named class/N (N counts within the class, as the C side names it)."""
import ast
import collections
import os

from harness import ROOT

PATH = os.path.join(ROOT, "profiles", "relay_tricks.def")
DEFAULT_HELO = "client.example"

Case = collections.namedtuple("Case", "name cls helo mail rcpt stranger")


def load(path=PATH):
    cases, counts = [], collections.Counter()
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("TRICK(") or not line.endswith(")"):
                continue
            # the fields are C string literals with \" and \\ only: Python reads
            # them the same way
            cls, helo, mail, rcpt, stranger = ast.literal_eval("(" + line[6:-1] + ")")
            counts[cls] += 1
            cases.append(Case("%s/%d" % (cls, counts[cls]), cls, helo or DEFAULT_HELO,
                              mail, rcpt, stranger))
    if not cases:
        raise AssertionError("no TRICK line in %s" % path)
    return cases


def expand(text, local, own, hostname):
    """Fill in the placeholders the way profiles/audit.c does."""
    cap = ".".join(label[:1].upper() + label[1:] for label in local.split("."))
    for key, value in (("{local}", local), ("{LOCAL}", local.upper()), ("{Local}", cap),
                       ("{own}", own), ("{hostname}", hostname)):
        text = text.replace(key, value)
    return text
