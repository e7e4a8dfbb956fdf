"""What production mode refuses in any process's settings: placeholder passwords.

A password copied from an example (the compose file's, a tutorial's `postgres:postgres`)
works, so nothing else would ever notice it. In production a process refuses to start with
one in a URL setting or a secret setting.
"""

from collections.abc import Iterator, Mapping
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

# Compared without regard to case. `userbus` is the compose file's own database password.
PLACEHOLDER_PASSWORDS = frozenset(
    {
        "",
        "admin",
        "changeit",
        "changeme",
        "change-me",
        "change_me",
        "default",
        "example",
        "guest",
        "kafka",
        "letmein",
        "pass",
        "passw0rd",
        "password",
        "postgres",
        "redis",
        "root",
        "secret",
        "test",
        "userbus",
        "valkey",
        "12345678",
        "123456",
    }
)


def is_placeholder(password: str) -> bool:
    """Whether `password` is one that examples and defaults use."""
    return password.strip().lower() in PLACEHOLDER_PASSWORDS


def url_password(url: str) -> str | None:
    """The password in a URL's user part (`scheme://user:password@host`), if it has one."""
    if "://" not in url:
        return None
    netloc = urlsplit(url).netloc
    userinfo, at, _ = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return None
    return unquote(userinfo.partition(":")[2])


def placeholder_secrets(values: Mapping[str, object], prefix: str) -> Iterator[str]:
    """One message per setting (URL or secret) whose password is a placeholder."""
    for name, value in values.items():
        variable = f"{prefix}{name}".upper()
        if isinstance(value, SecretStr):
            if is_placeholder(value.get_secret_value()):
                yield f"{variable} is a placeholder password"
        elif isinstance(value, str):
            password = url_password(value)
            if password is not None and is_placeholder(password):
                yield f"{variable} holds a placeholder password ({password!r})"
