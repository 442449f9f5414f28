"""Messages the integration tests send: made up, reproducible from a seed, and
dot-stuffed for DATA. One module for every suite (faults, durability, ...)."""


def make_message(token, size, rng, rich=False):
    """CRLF lines < 1000 octets, some starting with a dot (so dot-stuffing
    matters); about size octets, unique by token (an X-Test-Token header).
    rich: also ".." lines, 8-bit octets and a Message-ID (the durability suite
    compares such messages byte for byte)."""
    if rich:
        head = ("From: sender@client.example\r\nTo: u@example.test\r\n"
                "Subject: durability %s\r\nX-Test-Token: %s\r\n"
                "Message-ID: <%s@client.example>\r\n\r\n" % (token, token, token)).encode()
        lines = [b"first body line of " + token.encode()]
    else:
        head = ("From: s@client.example\r\nTo: u@example.test\r\nSubject: fault %s\r\n"
                "X-Test-Token: %s\r\n\r\n" % (token, token)).encode()
        lines = [b"first line of " + token.encode()]
    n = len(head)
    i = 0
    while n < size:
        line = _rich_line(i, rng) if rich else _plain_line(i, rng)
        lines.append(line)
        n += len(line) + 2
        i += 1
    lines.append(b"last line of " + token.encode())
    return head + b"\r\n".join(lines) + b"\r\n"


def _plain_line(i, rng):
    k = rng.randrange(10, 120)
    if i % 9 == 4:
        return b"." + b"d" * k
    return ("%06d " % i).encode() + bytes(rng.choice(b"abcdefXYZ -") for _ in range(k))


def _rich_line(i, rng):
    k = rng.randrange(0, 200)
    if i % 7 == 3:
        return b"." + b"d" * k          # needs stuffing
    if i % 11 == 5:
        return b".."                    # needs stuffing too
    if i % 13 == 7:
        return ("caf\u00e9 %d " % i).encode() + bytes([0xe2, 0x82, 0xac]) * 3
    return ("%06d " % i).encode() + bytes(rng.choice(b"abcdefghij KLMNOP") for _ in range(k))


def dot_stuff(msg):
    """RFC 5321 4.5.2: a line starting with a dot gets one more."""
    return b"\r\n".join(b"." + l if l.startswith(b".") else l for l in msg.split(b"\r\n"))
