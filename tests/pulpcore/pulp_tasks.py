"""pulp_file's tasks run as real pulpcore tasks in this process, and the records they read.

pulp_file's ``synchronize`` is not called bare: a ``Task`` row is created with this
process's ``AppStatus`` as its ``app_lock``, and ``execute_task`` runs it inside
``using_workdir()``, as a pulpcore worker does (no worker, no API server).
"""

from __future__ import annotations

import uuid
from typing import Any

__all__ = ["file_remote", "publish_and_distribute", "run_task", "sync"]


def run_task(name: str, **kwargs: Any) -> Any:
    """Run the task function ``name`` (dotted path) with ``kwargs``; the finished Task."""
    from pulpcore.app.models import AppStatus, Task
    from pulpcore.constants import TASK_STATES
    from pulpcore.tasking.tasks import execute_task, using_workdir

    task = Task.objects.create(
        state=TASK_STATES.WAITING,
        name=name,
        enc_kwargs=kwargs,
        app_lock=AppStatus.objects.current(),
        immediate=False,
        deferred=True,
    )
    with using_workdir():
        execute_task(task)
    task.refresh_from_db()
    return task


def file_remote(url: str, **fields: Any) -> Any:
    """A new ``FileRemote`` (policy ``immediate`` unless ``fields`` say otherwise)."""
    from pulp_file.app.models import FileRemote

    fields.setdefault("policy", "immediate")
    return FileRemote.objects.create(name=f"remote-{uuid.uuid4().hex[:12]}", url=url, **fields)


def sync(remote: Any) -> tuple[Any, Any]:
    """Sync a new ``FileRepository`` from ``remote``: (repository, finished Task)."""
    from pulp_file.app.models import FileRepository

    repository = FileRepository.objects.create(name=f"repo-{uuid.uuid4().hex[:12]}")
    task = run_task(
        "pulp_file.app.tasks.synchronize",
        remote_pk=str(remote.pk),
        repository_pk=str(repository.pk),
        mirror=False,
    )
    return repository, task


def publish_and_distribute(repository: Any, remote: Any) -> str:
    """Publish the latest version and distribute it; the distribution's base path."""
    from pulp_file.app.models import FileDistribution, FilePublication

    version = repository.latest_version()
    task = run_task(
        "pulp_file.app.tasks.publish",
        manifest="PULP_MANIFEST",
        repository_version_pk=str(version.pk),
    )
    assert task.state == "completed", task.error
    publication = FilePublication.objects.get(repository_version=version)
    base_path = f"dist-{uuid.uuid4().hex[:12]}"
    FileDistribution.objects.create(
        name=base_path, base_path=base_path, publication=publication, remote=remote
    )
    return base_path
