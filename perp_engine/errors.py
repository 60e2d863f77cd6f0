"""User-facing errors: one line that names the offending field and what is allowed."""


class PerpError(Exception):
    """Bad input from a user. The CLI prints ``str(err)`` alone and exits with code 2."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_choice(field: str, value, allowed) -> None:
    """PerpError naming ``field`` unless ``value`` is one of ``allowed`` (any iterable of names, listed in the message)."""
    if value not in allowed:
        raise PerpError(field, f"{value!r} is not allowed; use one of {', '.join(allowed)}")
