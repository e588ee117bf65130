"""The hostile mail of issue 10 row 3, at any size: quoted lines, unclosed tags, long lines.

``hostile_mail(scale)`` is about 45 KB times ``scale`` (scale 4 is the issue's
180 KB: 10,000 quoted lines and 30,000 unclosed ``<div>``); used by
tests/test_render.py, bench/render.py and the corpus case
``tests/corpus/intake/hostile_quotes_unclosed_divs.eml`` (scale 4).
"""

from __future__ import annotations


def hostile_mail(scale: int, *, message_id: str = "<hostile@attacker.example>") -> bytes:
    quotes = "\r\n".join("> an old line" if i % 10 == 0 else ">" for i in range(2500 * scale))
    long_line = "x" * (1000 * scale)
    text = f"New text first.\r\n{quotes}\r\n{long_line}\r\nand a last plain line.\r\n"
    html = "<div>" * (7500 * scale) + "<p>Hello</p>" + ("<b>" * 10) + "end"
    boundary = "hostile-boundary"
    return (
        "From: Mallory <mallory@attacker.example>\r\n"
        "To: help-desk@example.com\r\n"
        "Subject: Quotes and unclosed tags\r\n"
        f"Message-ID: {message_id}\r\n"
        "Date: Fri, 27 Nov 2026 11:00:00 +0100\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
        f"--{boundary}--\r\n"
    ).encode()
