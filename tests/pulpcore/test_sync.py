"""pulp_file's immediate sync, run as a pulpcore task: bytes, digests, errors."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from pulp_origin import Origin, TreeFile, write_tree
from pulp_site import PULPCORE_WARNINGS, PulpSite
from pulp_tasks import file_remote, sync

pytestmark = PULPCORE_WARNINGS
OriginFactory = Callable[..., Origin]

SIZES = [0, 1, 1000, 65_536, 65_537, 1_048_576 + 17, 5 * 1_048_576 + 3]


def _files(sizes: list[int], prefix: str = "") -> list[TreeFile]:
    return [TreeFile(f"{prefix}dir{i % 2}/file-{i}-{size}.bin", os.urandom(size))
            for i, size in enumerate(sizes)]  # fmt: skip


def _artifacts(repository: object) -> dict[str, object]:
    """relative_path -> Artifact of the repository's latest version."""
    from pulpcore.app.models import ContentArtifact

    version = repository.latest_version()  # type: ignore[attr-defined]
    return {
        ca.relative_path: ca.artifact
        for ca in ContentArtifact.objects.filter(content__in=version.content)
    }


def test_immediate_sync_stores_every_file_with_every_digest(
    pulp_site: PulpSite,
    origin: OriginFactory,
    tree: Path,
    working_directory_empty: Callable[[], list[str]],
) -> None:
    from pulpcore.app.models import Artifact

    files = _files(SIZES)
    write_tree(tree, files)
    server = origin(tree)
    repository, task = sync(file_remote(server.url("PULP_MANIFEST")))

    assert task.state == "completed", task.error
    artifacts = _artifacts(repository)
    assert sorted(artifacts) == sorted(f.relative_path for f in files)
    assert Artifact.DIGEST_FIELDS, "pulpcore requires digests"
    for item in files:
        artifact = artifacts[item.relative_path]
        stored = Path(artifact.file.path)
        assert pulp_site.media_root in stored.parents
        data = stored.read_bytes()
        assert data == item.data
        assert artifact.size == len(item.data)
        for field in Artifact.DIGEST_FIELDS:
            assert getattr(artifact, field) == hashlib.new(field, data).hexdigest(), field
    assert server.file_requests() == len(files)
    assert working_directory_empty() == []


def test_wrong_sha256_fails_the_task_with_pulpcores_checksum_message(
    origin: OriginFactory, tree: Path, working_directory_empty: Callable[[], list[str]]
) -> None:
    files = _files([2048, 4096])
    wrong = "0" * 64
    write_tree(tree, files, manifest_sha256={files[1].relative_path: wrong})
    server = origin(tree)
    repository, task = sync(file_remote(server.url("PULP_MANIFEST")))

    assert task.state == "failed"
    description = task.error["description"]
    assert description.startswith("[PLP0003] ")
    assert (
        f"A file located at the url {server.url(files[1].relative_path)} failed validation due"
        f" to checksum. Expected '{wrong}', Actual '{files[1].sha256}'"
    ) in description
    assert repository.latest_version().number == 0
    assert working_directory_empty() == []


def test_a_404_fails_the_task_with_the_status(
    origin: OriginFactory, tree: Path, working_directory_empty: Callable[[], list[str]]
) -> None:
    files = _files([100, 200])
    write_tree(tree, files, unlisted=(files[0].relative_path,))
    server = origin(tree)
    repository, task = sync(file_remote(server.url("PULP_MANIFEST")))

    assert task.state == "failed"
    description = task.error["description"]
    assert "404" in description
    assert server.url(files[0].relative_path) in description
    assert (files[0].relative_path, 404) in server.statuses
    assert repository.latest_version().number == 0
    assert working_directory_empty() == []
