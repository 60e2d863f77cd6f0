"""Remote code as a trust boundary: a config's ``trust_remote_code`` lets transformers run Python code from the
model's files. A config read back from the store (a queued run, a run to export) is honoured only when the
command line (``--trust-remote-code``) or the app session gives it too: whoever can write the SQLite file must
not be able to make the server run code."""

from __future__ import annotations

from ..config import RunConfig
from ..errors import PerpError

TRUST_FLAG = "--trust-remote-code"


def check_trusted(config: RunConfig, trusted: bool, what: str) -> None:
    """PerpError when ``config`` (``what``, e.g. "run 12's stored config") asks for remote code that the
    command line or the app session did not give (``trusted``)."""
    if config.trust_remote_code and not trusted:
        raise PerpError("trust_remote_code", f"{what} sets trust_remote_code, which runs Python code from the "
                                             f"model's files; refused unless the command that runs it gives {TRUST_FLAG}")
