"""Identifiers that become MQTT topic levels (site, room, feed, recipient, instance ids)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def validate_identifier(value: str) -> str:
    """Site, room, feed and recipient ids become MQTT topic levels.

    Only letters, digits, ``-`` and ``_`` are allowed, so no id can contain a
    topic separator or a wildcard and reach another room's topics.
    """
    if not value:
        raise ValueError("must not be empty")
    if len(value) > 64:
        raise ValueError("must be at most 64 characters")
    bad = sorted(set(value) - _ID_CHARS)
    if bad:
        raise ValueError(
            f"{value!r} contains {''.join(bad)!r}; only letters, digits, '-' and '_' are allowed"
        )
    return value


Identifier = Annotated[str, AfterValidator(validate_identifier)]
