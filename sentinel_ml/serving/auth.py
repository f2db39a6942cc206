"""The serving API's bearer token: its file, and the one check every protocol's guard calls.

The token never travels in ``ServeArgs``: the args name the *file* that holds it (``token_file``),
and each replica reads that file once when it starts and keeps only the token's SHA-256. So the
args that ``sentinel serve``/``status -o json``, ``serving.json`` and a RayService's serveConfigV2
show carry a path, never the value. Comparing digests with ``hmac.compare_digest`` takes the same
time whatever the presented token is, and its length included.

Standard library only: the CLI imports this to create and read the token file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Literal, get_args

from sentinel_ml.errors import ConfigError

AuthMode = Literal["none", "token"]
AUTH_MODES: tuple[str, ...] = get_args(AuthMode)
TOKEN_FILE_NAME = "serve-token"  # $SENTINEL_HOME/serve-token on the local target
TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 43 characters, 256 bits
BEARER = "bearer"  # the Authorization scheme, compared case-insensitively (RFC 9110 §11.1)
GRPC_METADATA_KEY = "authorization"  # gRPC metadata keys are lower case
CHALLENGE = "Bearer"  # WWW-Authenticate of a 401 (RFC 6750 §3)


class TokenCheck:
    """Accepts exactly one token. Holds its SHA-256, not the token, and never shows either."""

    __slots__ = ("_digest",)

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an empty token accepts nothing")
        self._digest = hashlib.sha256(token.encode()).digest()

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TokenCheck:
        return cls(read_token(path))

    def accepts(self, presented: str | bytes | None) -> bool:
        """True for the token; False for anything else, or nothing. Constant time in ``presented``."""
        if presented is None:
            presented = b""
        raw = presented.encode("latin-1", "replace") if isinstance(presented, str) else presented
        return hmac.compare_digest(hashlib.sha256(raw).digest(), self._digest)

    def accepts_header(self, authorization: str | bytes | None) -> bool:
        """True for ``Bearer <the token>`` (an Authorization header or gRPC ``authorization`` value)."""
        return self.accepts(bearer_token(authorization))

    def __repr__(self) -> str:
        return "TokenCheck(<hidden>)"


def bearer_token(authorization: str | bytes | None) -> bytes | None:
    """The credentials of ``Bearer <token>``; None for another scheme, a missing header or no token."""
    if authorization is None:
        return None
    raw = authorization.encode("latin-1", "replace") if isinstance(authorization, str) else authorization
    scheme, _, token = raw.strip().partition(b" ")
    token = token.strip()
    if scheme.decode("latin-1").casefold() != BEARER or not token:
        return None
    return token


def read_token(path: str | os.PathLike) -> str:
    """The token in ``path`` (surrounding whitespace dropped). Errors name the file, never its content."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the serving token file {path} ({type(e).__name__})",
                          hint="pass --token-file with a readable file, or leave it out to use "
                               f"$SENTINEL_HOME/{TOKEN_FILE_NAME}") from None
    if not token or any(c.isspace() for c in token):
        raise ConfigError(f"the serving token file {path} holds no token (empty, or more than one word)",
                          hint="write one token on one line, e.g. "
                               "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return token


def ensure_token_file(path: str | os.PathLike) -> Path:
    """``path``, created once with a fresh random token (mode 0600) when it does not exist. An existing
    file must be readable by its owner only: a token others can read guards nothing."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fd = None  # another process made it first: use theirs
        if fd is not None:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(TOKEN_BYTES) + "\n")
    check_private(path)
    read_token(path)  # refuses an empty file now, not in a replica later
    return path


def check_private(path: str | os.PathLike) -> None:
    """Refuse a token file that the group or others may read or write."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise ConfigError(f"cannot read the serving token file {path} ({type(e).__name__})",
                          hint="pass --token-file with an existing file") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"the serving token file {path} is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the serving token file {path} is open to other users (mode {mode & 0o777:o})",
                          hint=f"chmod 600 {path}")
