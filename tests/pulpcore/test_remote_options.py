"""A Remote's credentials, private CA, client certificate and proxy, honoured by a real sync."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path

import trustme
from pulp_origin import TLS_LEFTOVERS, Origin, TreeFile, write_tree
from pulp_site import PULPCORE_WARNINGS
from pulp_tasks import file_remote, sync

from plugins.proxy import ProxyProcess

pytestmark = [*PULPCORE_WARNINGS, TLS_LEFTOVERS]
OriginFactory = Callable[..., Origin]


def _tree(root: Path, count: int = 3) -> list[TreeFile]:
    files = [TreeFile(f"f{i}.bin", os.urandom(30_000 + i)) for i in range(count)]
    write_tree(root, files)
    return files


def _stored(repository: object) -> dict[str, bytes]:
    from pulpcore.app.models import ContentArtifact

    version = repository.latest_version()  # type: ignore[attr-defined]
    return {
        ca.relative_path: Path(ca.artifact.file.path).read_bytes()
        for ca in ContentArtifact.objects.filter(content__in=version.content)
    }


def test_basic_credentials_private_ca_and_an_authenticating_proxy(
    origin: OriginFactory,
    tree: Path,
    tls_ca: trustme.CA,
    tls_origin_context: Callable[..., ssl.SSLContext],
    tinyproxy_auth: ProxyProcess,
) -> None:
    files = _tree(tree)
    server = origin(tree, ssl_context=tls_origin_context(), basic_auth=("pulp", "origin-pw"))
    log_before = tinyproxy_auth.log_path.read_text(errors="replace")
    remote = file_remote(
        server.url("PULP_MANIFEST"),
        username="pulp",
        password="origin-pw",
        ca_cert=tls_ca.cert_pem.bytes().decode(),
        tls_validation=True,
        proxy_url=tinyproxy_auth.url,
        proxy_username=tinyproxy_auth.username,
        proxy_password=tinyproxy_auth.password,
    )
    repository, task = sync(remote)

    assert task.state == "completed", task.error
    assert _stored(repository) == {f.relative_path: f.data for f in files}
    assert all(status == 200 for _, status in server.statuses), server.statuses
    assert server.requests["PULP_MANIFEST"] == 1
    assert server.file_requests() == len(files)
    log = tinyproxy_auth.log_path.read_text(errors="replace")[len(log_before) :]
    assert f"CONNECT 127.0.0.1:{server.port}" in log


def test_wrong_basic_credentials_fail_with_401(origin: OriginFactory, tree: Path) -> None:
    _tree(tree, 1)
    server = origin(tree, basic_auth=("pulp", "origin-pw"))
    repository, task = sync(file_remote(server.url("PULP_MANIFEST"), username="pulp",
                                        password="wrong"))  # fmt: skip

    assert task.state == "failed"
    assert "401" in task.error["description"]
    assert "wrong" not in str(task.error)
    assert repository.latest_version().number == 0


def test_client_certificate_and_key_as_pem_text(
    origin: OriginFactory,
    tree: Path,
    tls_ca: trustme.CA,
    tls_origin_context: Callable[..., ssl.SSLContext],
) -> None:
    files = _tree(tree)
    server = origin(tree, ssl_context=tls_origin_context(client_ca=tls_ca))
    client = tls_ca.issue_cert("pulp-client@pulp-aio-download.test")
    remote = file_remote(
        server.url("PULP_MANIFEST"),
        ca_cert=tls_ca.cert_pem.bytes().decode(),
        client_cert=b"".join(blob.bytes() for blob in client.cert_chain_pems).decode(),
        client_key=client.private_key_pem.bytes().decode(),
    )
    repository, task = sync(remote)

    assert task.state == "completed", task.error
    assert _stored(repository) == {f.relative_path: f.data for f in files}


def test_an_untrusted_server_certificate_fails_the_sync(
    origin: OriginFactory, tree: Path, tls_origin_context: Callable[..., ssl.SSLContext]
) -> None:
    _tree(tree, 1)
    server = origin(tree, ssl_context=tls_origin_context())
    _, task = sync(file_remote(server.url("PULP_MANIFEST")))

    assert task.state == "failed"
    assert "certificate verify failed" in task.error["description"]
    assert server.requests["PULP_MANIFEST"] == 0
