"""Fuzzing the parsers of untrusted input with hypothesis.

Whatever text a manifest line or a remotes file holds, parsing ends in a valid object or a
:class:`ConfigError` (``ManifestError`` is one) — never another exception — and a request
that parses is safe: its relative path cannot escape, its URLs carry a supported scheme and
no credentials in ``repr``.
"""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pulp_aio_download.cli.manifest import ManifestError, parse_manifest_line
from pulp_aio_download.errors import ConfigError
from pulp_aio_download.models import DownloadRequest

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = ["url", "sources", "sha256", "digests", "size", "unit", "repository", "remote"]
UNIT_KEYS = ["type", "key", "metadata", "relative_path"]

# Scalars that are close to valid: real-looking URLs, digests, paths, plus junk.
hexish = st.text(alphabet="0123456789abcdefABCDEFxyz", min_size=0, max_size=130)
urlish = st.one_of(
    st.sampled_from(
        [
            "http://h/x",
            "https://u:p@h:8443/x",
            "file:///etc/passwd",
            "ftp://h/x",
            "http://",
            "http://[::1/x",
            "http://h:99999/x",
            "javascript:alert(1)",
            "//h/x",
            "",
        ]
    ),
    st.text(max_size=40),
)
pathish = st.one_of(
    st.sampled_from(["a/b", "../x", "/abs", "a/../../b", "a\x00b", "C:/x", "a\\b", ".", "./a"]),
    st.text(max_size=20),
)
scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20)
)
json_value = st.recursive(
    scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def manifest_objects(draw: st.DrawFn) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from([*KEYS, "bogus"]), max_size=6, unique=True)):
        if key == "url":
            obj[key] = draw(st.one_of(urlish, json_value))
        elif key == "sources":
            source = st.one_of(
                urlish,
                st.fixed_dictionaries(
                    {"url": urlish},
                    optional={"priority": scalar, "weight": scalar, "remote": scalar, "x": scalar},
                ),
                json_value,
            )
            obj[key] = draw(st.one_of(st.lists(source, max_size=3), json_value))
        elif key in ("sha256",):
            obj[key] = draw(st.one_of(hexish, json_value))
        elif key == "digests":
            obj[key] = draw(
                st.one_of(
                    st.dictionaries(
                        st.sampled_from(["sha256", "SHA-512", "md5", "crc32", ""]),
                        hexish,
                        max_size=3,
                    ),
                    json_value,
                )
            )
        elif key == "unit":
            unit = {}
            for ukey in draw(
                st.lists(st.sampled_from([*UNIT_KEYS, "zz"]), max_size=5, unique=True)
            ):
                unit[ukey] = draw(
                    pathish if ukey == "relative_path" else st.one_of(pathish, json_value)
                )
            obj[key] = draw(st.one_of(st.just(unit), json_value))
        else:
            obj[key] = draw(json_value)
    return obj


def check_line(text: str) -> None:
    try:
        request = parse_manifest_line(text, line=7)
    except ManifestError as exc:
        error: ManifestError | None = exc
    else:
        error = None
    if error is not None:
        assert error.line == 7 and str(error).startswith("line 7: ")
        return
    if request is None:
        assert not text.strip() or text.strip().startswith("#")
        return
    assert isinstance(request, DownloadRequest)
    for source in request.sources:
        assert source.scheme in ("http", "https", "file")
        assert "@" not in source.url.split("/")[2] if "://" in source.url else True
    if request.unit is not None and request.unit.relative_path is not None:
        path = request.unit.relative_path
        assert not path.startswith("/") and ".." not in path.split("/") and "\x00" not in path
    repr(request)


@FUZZ
@given(st.text(max_size=300))
@example("\x00")
@example('{"url": "http://h/x", "size": 1e400}')
@example('{"url": "http://h/x", "unit": {"type": "t", "key": "k", "relative_path": "../x"}}')
@example('{"url": "http://h/x", "sha256": "' + "A" * 64 + '"}')
@example("[" * 5000)
def test_any_text_parses_or_is_a_manifest_error(text: str) -> None:
    check_line(text)


@FUZZ
@given(manifest_objects())
def test_structured_manifest_lines(obj: dict[str, Any]) -> None:
    check_line(json.dumps(obj))


@FUZZ
@given(manifest_objects(), st.sampled_from(["", " ", "\t", "\ufeff", "\n"]))
def test_whitespace_and_bom_around_lines(obj: dict[str, Any], pad: str) -> None:
    check_line(pad + json.dumps(obj, ensure_ascii=False) + pad)


# -- the TOML remotes file ----------------------------------------------------------------

remotes_file = pytest.importorskip("pulp_aio_download.cli.remotes_file")

toml_key = st.sampled_from(
    [
        "username", "password", "password_env", "headers", "user_agent", "max_connections",
        "rate_limit", "max_redirects", "allow_insecure_redirects", "trust_env", "name", "junk",
    ]
)  # fmt: skip
toml_scalar = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(alphabet=string.printable, max_size=15).map(json.dumps),
    st.just('{ "X-A" = "b" }'),
    st.just("[429, 503]"),
    st.just('"UNSET_ENV_VAR_FOR_FUZZ"'),
)
sub_table = st.sampled_from(["", ".tls", ".proxy", ".timeouts", ".retry", ".auth", ".bogus"])


@st.composite
def toml_documents(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["a", "b", "we ird", "x.y"]))
        quoted = json.dumps(name) if " " in name or "." in name else name
        lines.append(f"[remotes.{quoted}{draw(sub_table)}]")
        for key in draw(st.lists(toml_key | st.sampled_from(
            ["url", "verify", "ca_file", "type", "attempts", "statuses", "connect", "min_speed"]
        ), max_size=4, unique=True)):  # fmt: skip
            lines.append(f"{key} = {draw(toml_scalar)}")
    return "\n".join(lines) + "\n"


@FUZZ
@given(st.one_of(toml_documents(), st.text(max_size=200)))
@example("remotes = 3")
@example("[remotes.a]\nmax_connections = 99999999999999999999")
@example("[remotes.a.timeouts]\nconnect = -1")
@example('[remotes.a]\npassword_env = "NOPE"')
def test_remotes_toml_parses_or_is_a_config_error(text: str) -> None:
    try:
        remotes = remotes_file.parse_remotes(text, file="fuzz.toml", env={"SET": "x"})
    except ConfigError as exc:
        error: ConfigError | None = exc
    else:
        error = None
    if error is not None:
        assert "fuzz.toml" in str(error)
        return
    for name, remote in remotes.items():
        assert isinstance(name, str)
        repr(remote)
