"""SharePoint Online's rules for file and folder names, shared by our Graph client (to quarantine a document with a
named reason before any request) and the Graph stand-in (to refuse it as SharePoint would).

Rules from Microsoft's "Invalid file names and file types in OneDrive and SharePoint" page, as quoted by several
university help desks [community; Microsoft's own page could not be opened here]: the characters
``" * : < > ? / \\ |``; leading or trailing spaces; the names ``.lock``, ``CON``, ``PRN``, ``AUX``, ``NUL``,
``COM0``-``COM9``, ``LPT0``-``LPT9``, ``desktop.ini``, anything starting with ``~$``; ``_vti_`` anywhere; a name
ending with a period; a whole decoded path (from the site's server-relative URL) over 400 characters. Reserved
device names are refused with an extension too (``CON.txt``), as Windows does [community].
"""

from __future__ import annotations

import re

MAX_PATH_LENGTH = 400
FORBIDDEN_CHARACTERS = frozenset('"*:<>?/\\|')
_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?|\.lock|desktop\.ini")


def valid_sharepoint_name(name: str, path_length: int | None = None) -> str | None:
    """``None`` when SharePoint accepts ``name`` for a file or folder, else the reason: ``"empty"``,
    ``"forbidden_character"`` (also control characters [unverified]), ``"trailing_dot_or_space"`` (also a leading
    space), ``"reserved_name"`` or ``"too_long"`` (``name`` alone, or ``path_length`` — the length of the whole
    server-relative path — over 400 characters)."""
    if not name:
        return "empty"
    if any(c in FORBIDDEN_CHARACTERS or ord(c) < 32 for c in name):
        return "forbidden_character"
    if name[0] == " " or name[-1] in ". ":
        return "trailing_dot_or_space"
    if _RESERVED.fullmatch(name) or name.startswith("~$") or "_vti_" in name.lower():
        return "reserved_name"
    if len(name) > MAX_PATH_LENGTH or (path_length is not None and path_length > MAX_PATH_LENGTH):
        return "too_long"
    return None
