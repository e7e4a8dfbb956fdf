"""The bearer dependencies: one dependency each, documented with the OAuth2 password scheme."""

from pathlib import Path
from typing import Any

import pytest

from auth.main import create_app
from auth.settings import AuthSettings

SCHEME = "OAuth2PasswordBearer"
BEARER_OPERATIONS = [
    ("get", "/users/me"),
    ("get", "/users"),
    ("get", "/users/{username}"),
    ("put", "/users/{username}"),
    ("delete", "/users/{username}"),
    ("post", "/auth/logout-all"),
]


@pytest.fixture
def openapi(tmp_path: Path) -> dict[str, Any]:
    """The app's OpenAPI document (building it connects to nothing)."""
    settings = AuthSettings(
        _env_file=None, database_url="postgresql://nobody@127.0.0.1/none", data_dir=tmp_path
    )
    document: dict[str, Any] = create_app(settings).openapi()
    return document


@pytest.mark.parametrize(("method", "path"), BEARER_OPERATIONS)
def test_every_bearer_route_is_documented_with_the_password_flow_scheme(
    openapi: dict[str, Any], method: str, path: str
) -> None:
    assert openapi["paths"][path][method]["security"] == [{SCHEME: []}]


def test_the_scheme_is_the_password_flow_of_the_token_endpoint(openapi: dict[str, Any]) -> None:
    scheme = openapi["components"]["securitySchemes"][SCHEME]

    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["password"]["tokenUrl"] == "/auth/token"


def test_the_bearer_routes_take_no_parameter_for_the_token(openapi: dict[str, Any]) -> None:
    me = openapi["paths"]["/users/me"]["get"]

    assert "parameters" not in me
    assert "requestBody" not in me
