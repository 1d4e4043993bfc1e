"""Secrets never leave the process: every message, journal entry and generated text passes `scrub` first.

The secrets are the values of the environment's credential variables (OpenAI, Hugging Face, AWS, GCS, Azure, and
any *_KEY, *_TOKEN, *_SECRET or *_PASSWORD of 8+ characters). Scrub before cutting a text to length: a key cut
in half is no longer found.
"""

from __future__ import annotations

import os
import re

MASK = "***"
_NAMED = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
          "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_KEY", "GOOGLE_SERVICE_ACCOUNT_KEY")
_SECRETISH = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$")
MIN_LEN = 8  # shorter values (e.g. "not-needed" placeholders are longer, "x" is not) would mask ordinary words


def secret_values() -> list[str]:
    """Credential values set in the environment, longest first (so a key containing another is masked whole)."""
    found = {v for k, v in os.environ.items()
             if v and len(v) >= MIN_LEN and (k in _NAMED or _SECRETISH.search(k)) and v != "not-needed"}
    return sorted(found, key=len, reverse=True)


def scrub(text: str) -> str:
    for value in secret_values():
        if value in text:
            text = text.replace(value, MASK)
    return text


def contains_secret(text: str) -> bool:
    return any(v in text for v in secret_values())
