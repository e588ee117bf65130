"""Charsets: decoding text the way mail clients do, whatever the label says."""

from __future__ import annotations

import codecs

# Labels whose real-world content is a superset encoding (from the WHATWG encoding spec).
_SUPERSETS = {
    "gb2312": "gbk",
    "x-gbk": "gbk",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-9": "cp1254",
    "tis-620": "cp874",
    "shift_jis": "cp932",
}
_NOT_MAIL_CHARSETS = {"idna", "punycode", "raw-unicode-escape", "unicode-escape", "undefined"}


def _text_codec(label: str) -> str | None:
    """The Python codec for a charset label, or None if it names no text encoding."""
    label = _SUPERSETS.get(label, label)
    try:
        info = codecs.lookup(label)
    except Exception:  # LookupError, or a label the codec machinery chokes on
        return None
    # base64, zlib, rot13 and kin are codecs too, but not text encodings;
    # idna, punycode and the escape codecs are, but no mail client's charset.
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_MAIL_CHARSETS:
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode text the way mail clients do; never raises.

    ``iso-8859-1`` means Windows-1252 in practice (0x80 is the euro sign,
    0x93/0x94 are smart quotes). 8-bit bytes under a ``us-ascii`` label, no
    label, or an unknown one are UTF-8 where they are valid UTF-8, else cp1252.
    """
    label = (charset or "").strip().strip("\"'").lower()
    codec = _text_codec(label) if label else None
    if codec == "iso8859-1":  # every latin-1 alias
        return data.decode("cp1252", "replace")
    if codec is not None and codec != "ascii":
        try:
            return data.decode(codec, "replace")
        except Exception:  # idna, punycode and kin accept no "replace"
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")
