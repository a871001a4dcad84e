"""Web sessions: the key under which a session cookie carries the account's generation.

A session is valid while the generation it carries equals the account row's
``session_generation`` (see ``market.accounts``).
"""

from __future__ import annotations

#: The session key holding the account's session generation at sign-in.
SESSION_GENERATION_KEY = "session_generation"
