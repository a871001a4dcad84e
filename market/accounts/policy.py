"""Which new passwords are refused, and the sentence that says why.

NIST SP 800-63B (5.1.1.2) asks for a length floor and a check against values known to be
commonly used, expected or compromised, and against no composition rules. Here:

* at least ``MIN_LENGTH`` characters (and at most ``MAX_LENGTH``: argon2 hashes whatever it
  is given, but a megabyte password is an attack, not a password);
* not mostly made of what every cracking list tries first: a small built-in list of the most
  common passwords and words of leaked lists, keyboard rows and alphabetic or numeric runs
  ("qwerty", "1234", "abcd", forwards or backwards), one character repeated, and the local
  part of the account's own e-mail address. Those pieces are struck out (case-insensitively)
  and what is left must still be ``MIN_REMAINDER`` characters long: "password1234!" is
  refused, while a long phrase that happens to contain a common word is not.

The list is deliberately small and built in (no network look-up, nothing to download): it
stops the passwords that fall first, not a determined offline attack, which argon2id
(market.accounts.passwords) is there to slow down.
"""

from __future__ import annotations

import re

from market.errors import ValidationFailed

MIN_LENGTH = 12
MAX_LENGTH = 1024
#: Characters a password must keep once the common pieces are struck out.
MIN_REMAINDER = 8

#: Words and strings at the top of every leaked-password frequency list (lower case).
COMMON_PIECES = (
    "password",
    "passwort",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "pass",
    "letmein",
    "welcome",
    "iloveyou",
    "admin",
    "administrator",
    "login",
    "secret",
    "master",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "princess",
    "sunshine",
    "shadow",
    "superman",
    "trustno1",
    "starwars",
    "whatever",
    "freedom",
    "changeme",
    "default",
    "guest",
    "hello",
    "market",
    "marketplace",
    "qazwsx",
    "1q2w3e4r",
    "zaq12wsx",
    "abc123",
    "111111",
    "123123",
    "654321",
    "666666",
    "696969",
    "7777777",
    "121212",
    "000000",
)

#: Sequences whose runs of RUN_LENGTH or more (either direction) are struck out.
SEQUENCES = (
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "qwertzuiop",
    "azertyuiop",
    "1234567890",
)
RUN_LENGTH = 4
#: One character this many times in a row is struck out ("aaa", "!!!").
REPEAT_LENGTH = 3

_LOCAL_PART_PIECES = re.compile(r"[^a-z0-9]+")


def _strike_pieces(text: str, mask: list[bool], pieces: list[str]) -> None:
    for piece in pieces:
        start = text.find(piece)
        while start != -1:
            for index in range(start, start + len(piece)):
                mask[index] = True
            start = text.find(piece, start + 1)


def _strike_runs(text: str, mask: list[bool]) -> None:
    """Mark runs of RUN_LENGTH+ consecutive characters of a sequence, forwards or back."""
    for sequence in SEQUENCES:
        for line in (sequence, sequence[::-1]):
            successor = {a: b for a, b in zip(line, line[1:], strict=False)}
            start = 0
            while start < len(text):
                end = start + 1
                while end < len(text) and successor.get(text[end - 1]) == text[end]:
                    end += 1
                if end - start >= RUN_LENGTH:
                    for index in range(start, end):
                        mask[index] = True
                start = end


def _strike_repeats(text: str, mask: list[bool]) -> None:
    start = 0
    while start < len(text):
        end = start + 1
        while end < len(text) and text[end] == text[start]:
            end += 1
        if end - start >= REPEAT_LENGTH:
            for index in range(start, end):
                mask[index] = True
        start = end


def weakness(password: str, *, email: str = "") -> str | None:
    """Why ``password`` is refused (one sentence for a person), or None when it is fine."""
    if len(password) < MIN_LENGTH:
        return f"the password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"the password may have at most {MAX_LENGTH} characters"
    text = password.lower()
    local = email.strip().lower().partition("@")[0]
    own = [p for p in [local, *_LOCAL_PART_PIECES.split(local)] if len(p) >= 3]
    if local and len(local) >= 3 and local in text:
        return "the password must not contain your e-mail address's name"
    mask = [False] * len(text)
    _strike_pieces(text, mask, sorted(COMMON_PIECES, key=len, reverse=True) + own)
    _strike_runs(text, mask)
    _strike_repeats(text, mask)
    remainder = "".join(ch for ch, struck in zip(text, mask, strict=True) if not struck)
    # Digits and punctuation tacked on ("!", "2024") add little: they do not count.
    letters = [ch for ch in remainder if ch.isalpha() or ch == " " or ord(ch) > 127]
    if len(remainder) < MIN_REMAINDER or len(set(letters)) < 3:
        return (
            "the password is too easy to guess: it is mostly a common password, a keyboard "
            "or number run, a repeated character or your e-mail address; a few unrelated "
            "words make a strong one"
        )
    return None


def check_password(password: str, *, email: str = "", field: str = "password") -> None:
    """Raise ValidationFailed (422, naming ``field``) if ``password`` is refused."""
    reason = weakness(password, email=email)
    if reason is not None:
        raise ValidationFailed(
            reason[0].upper() + reason[1:] + ".",
            details={"fields": [{"field": field, "message": reason}]},
        )
