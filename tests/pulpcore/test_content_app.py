"""on_demand sync, then pulpcore's content app streams from the origin and saves the artifact."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

from pulp_origin import Origin, TreeFile, write_tree
from pulp_site import PULPCORE_WARNINGS
from pulp_tasks import file_remote, publish_and_distribute, sync

from helpers import until_sync

pytestmark = PULPCORE_WARNINGS
OriginFactory = Callable[..., Origin]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, dict(response.headers), response.read()


def _artifact(repository: object, relative_path: str) -> object | None:
    from pulpcore.app.models import ContentArtifact

    version = repository.latest_version()  # type: ignore[attr-defined]
    return ContentArtifact.objects.get(
        content__in=version.content, relative_path=relative_path
    ).artifact


def _assert_saved(repository: object, item: TreeFile) -> None:
    from pulpcore.app.models import Artifact

    # The content app saves the artifact once the download ends, which may be after the
    # client has all the bytes it asked for (a Range).
    until_sync(lambda: _artifact(repository, item.relative_path) is not None, timeout=30)
    artifact = _artifact(repository, item.relative_path)
    data = Path(artifact.file.path).read_bytes()  # type: ignore[attr-defined]
    assert data == item.data
    for field in Artifact.DIGEST_FIELDS:
        assert getattr(artifact, field) == hashlib.new(field, data).hexdigest(), field


def test_on_demand_content_streamed_in_full_and_as_a_range_then_served_from_storage(
    origin: OriginFactory,
    tree: Path,
    content_app: str,
    working_directory_empty: Callable[[], list[str]],
) -> None:
    ranged = TreeFile("big/ranged.bin", os.urandom(3 * 1_048_576 + 11))
    whole = TreeFile("big/whole.bin", os.urandom(2 * 1_048_576 + 5))
    write_tree(tree, [ranged, whole])
    server = origin(tree)
    remote = file_remote(server.url("PULP_MANIFEST"), policy="on_demand")
    repository, task = sync(remote)
    assert task.state == "completed", task.error
    assert server.file_requests() == 0
    assert _artifact(repository, ranged.relative_path) is None
    base = f"{content_app}/pulp/content/{publish_and_distribute(repository, remote)}"

    status, headers, body = _get(f"{base}/{ranged.relative_path}", {"Range": "bytes=1000-2000999"})
    assert status == 206
    assert body == ranged.data[1000:2001000]
    assert headers["Content-Range"] == f"bytes 1000-2000999/{len(ranged.data)}"
    assert server.requests[ranged.relative_path] == 1
    _assert_saved(repository, ranged)

    status, headers, body = _get(f"{base}/{whole.relative_path}")
    assert status == 200
    assert body == whole.data
    assert server.requests[whole.relative_path] == 1
    _assert_saved(repository, whole)

    # Both are in pulpcore's storage now: the origin sees nothing more.
    served_before = sum(server.requests.values())
    status, _, body = _get(f"{base}/{ranged.relative_path}")
    assert (status, body) == (200, ranged.data)
    status, _, body = _get(f"{base}/{whole.relative_path}", {"Range": "bytes=-100"})
    assert (status, body) == (206, whole.data[-100:])
    assert sum(server.requests.values()) == served_before
    assert working_directory_empty() == []
