"""Secrets masked by value in everything a sandbox is given and gives back (see :mod:`agentopt.agents.runtime.sandbox`).

Standard library only, imports relative: ``agentopt export`` copies the sandbox into packages.
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.parse

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASS|AUTH|CREDENTIAL", re.IGNORECASE)
# The password of a URL such as postgresql://user:password@host/db (SQLAlchemy's reading: up to the '@').
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:([^\s@]+)@")
# Shorter values are not masked: they would rewrite ordinary words in answers, and are guessable anyway.
_MIN_SECRET_CHARS = 8
_registered: set[str] = set()
_registered_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Mask ``value`` in everything the sandboxes this process starts from now on are given and
    give back, as the secret-looking environment variables are: for a secret the parent holds
    outside its environment (an API key read from a variable with any name, an archive URL given
    in Python). A URL registers its password, not itself (the rest of it is no secret)."""
    with _registered_lock:
        _registered.update(_url_passwords(value) or [value])


def _url_passwords(text: str) -> list[str]:
    """The passwords of the URLs in ``text``, as written and percent-decoded (the form a database
    driver, and so a leak, would use)."""
    return [form for match in _URL_PASSWORD.finditer(text) for form in (match[1], urllib.parse.unquote(match[1]))]


class Redactor:
    """Last line of defence for secrets: every secret the parent holds is masked, by value, in
    everything it passes to the child (LLM replies and errors) and reads back from it (requests,
    prints, return values, errors). It masks the text as it is, and in JSON-escaped form; a secret
    the agent has re-encoded (reversed, base64) passes, which is why none is given to it."""

    def __init__(self, secrets: list[str]) -> None:
        forms = {form for s in secrets for form in (s, json.dumps(s)[1:-1], json.dumps(s, ensure_ascii=False)[1:-1])}
        self._pattern = re.compile("|".join(map(re.escape, sorted(forms, key=len, reverse=True)))) if forms else None

    @classmethod
    def current(cls) -> Redactor:
        """Variables whose names look secret, the password of a URL in any variable (a database URL
        in ``AGENTOPT_DB`` or ``DATABASE_URL`` is named like any other setting) and what
        :func:`register_secret` was given, as they are now."""
        with _registered_lock:
            registered = list(_registered)
        named = [v for k, v in os.environ.items() if _SECRET_NAME.search(k)]
        passwords = [p for v in os.environ.values() for p in _url_passwords(v)]
        return cls([s for s in (*named, *passwords, *registered) if len(s) >= _MIN_SECRET_CHARS])

    def __call__(self, text: str) -> str:
        return self._pattern.sub("[redacted]", text) if self._pattern else text
