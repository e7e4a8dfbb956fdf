"""Settings from files: `USERBUS_<NAME>_FILE=/run/secrets/x` gives USERBUS_<NAME> the file's text.

Docker and Kubernetes hand secrets to a container as files; the `_FILE` suffix is the
convention the official database images follow. Any setting can be given this way (database
URLs with their passwords, the Redis URL, the SMTP and Kafka SASL passwords, service client
secrets); a class's own `<name>_file` setting (USERBUS_JWT_PRIVATE_KEY_FILE) keeps its
meaning. Only the process environment is read for `_FILE` names, not the .env file.
"""

import os
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

SUFFIX = "_FILE"


class FileVariablesSource(PydanticBaseSettingsSource):
    """Values of USERBUS_<NAME>_FILE variables: the named files' text, without a final newline."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._prefix = str(settings_cls.model_config.get("env_prefix", "")).upper()

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: __call__ reads every field at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """The file-given values, by field name; a ValidationError names a file it cannot use."""
        # Variable names are matched without regard to case, as pydantic-settings does.
        environ = {name.upper(): value for name, value in os.environ.items()}
        fields = self.settings_cls.model_fields
        values: dict[str, Any] = {}
        problems: list[InitErrorDetails] = []
        for name in fields:
            if f"{name}_file" in fields:
                continue  # the class reads that file itself
            variable = f"{self._prefix}{name.upper()}"
            path = environ.get(variable + SUFFIX)
            if path is None:
                continue
            if variable in environ:
                problems.append(_problem(name, f"set {variable} or {variable}{SUFFIX}, not both"))
                continue
            try:
                # Files written by `echo` end in a newline that is no part of the secret.
                values[name] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(_problem(name, f"cannot read {path}: {exc}"))
        if problems:
            raise ValidationError.from_exception_data(self.settings_cls.__name__, problems)
        return values


def _problem(name: str, message: str) -> InitErrorDetails:
    # Located at `<name>_file`, so that the message names the variable that was set.
    return {
        "type": PydanticCustomError("secret_file", message),
        "loc": (f"{name}{SUFFIX.lower()}",),
        "input": None,
    }
