"""Mirrors of a whole remote (issue 24 item 2), against real nginx mirrors.

Every mirror is its own nginx (its own port, so host health is per mirror): ``good1`` has
every file, ``good2`` lacks ``Packages/b.rpm`` (a 404: per-file fail-over), ``stale``
serves another repomd.xml (skipped when a metalink says which is current) and ``down`` is
a port nothing listens on. The mirrorlist and the metalink are served by good1's nginx.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import pulp_aio_download as pad
from helpers import NO_RETRY, free_port, make_engine, sha256
from plugins.nginx import NginxServer

FILES = {"Packages/a.rpm": os.urandom(3000), "Packages/b.rpm": os.urandom(5000)}
REPOMD = b"<repomd><revision>2</revision></repomd>\n"


@dataclass
class Mirrors:
    good1: NginxServer
    good2: NginxServer
    stale: NginxServer
    down: str

    def packages_served(self, server: NginxServer) -> list[str]:
        return [r for r in server.requests() if "/Packages/" in r]


def _tree(root: Path, files: dict[str, bytes], repomd: bytes) -> Path:
    for name, data in {**files, "repodata/repomd.xml": repomd}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def mirrors(tmp_path: Path, nginx: Callable[..., NginxServer]) -> Mirrors:
    good1 = nginx(_tree(tmp_path / "good1", FILES, REPOMD))
    partial = {k: v for k, v in FILES.items() if k != "Packages/b.rpm"}
    good2 = nginx(_tree(tmp_path / "good2", partial, REPOMD))
    stale = nginx(_tree(tmp_path / "stale", FILES, b"<repomd><revision>1</revision></repomd>\n"))
    return Mirrors(good1, good2, stale, f"http://127.0.0.1:{free_port()}")


def _publish(server: NginxServer, name: str, text: str) -> str:
    (server.root / "lists").mkdir(exist_ok=True)
    (server.root / "lists" / name).write_text(text)
    return f"{server.base_url}/lists/{name}"


def _metalink(urls: list[tuple[str, int]], repomd: bytes = REPOMD) -> str:
    resources = "\n".join(
        f'<url protocol="http" type="http" location="US" preference="{p}">'
        f"{u}/repodata/repomd.xml</url>"
        for u, p in urls
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<metalink version="3.0" xmlns="http://www.metalinker.org/"
          xmlns:mm0="http://fedorahosted.org/mirrormanager">
 <files>
  <file name="repomd.xml">
   <mm0:timestamp>1700000000</mm0:timestamp>
   <size>{len(repomd)}</size>
   <verification>
    <hash type="md5">{hashlib.md5(repomd).hexdigest()}</hash>
    <hash type="sha256">{sha256(repomd)}</hash>
   </verification>
   <resources maxconnections="1">
    <url protocol="rsync" type="rsync" preference="100">rsync://x/repodata/repomd.xml</url>
    {resources}
   </resources>
  </file>
 </files>
</metalink>
"""


async def _fetch_all(tmp_path: Path, remote: pad.RemoteConfig) -> dict[str, pad.DownloadResult]:
    async with make_engine(tmp_path, remote) as engine:
        requests = [
            pad.DownloadRequest(
                relative_path=path,
                remote=remote.name,
                expected_digests={"sha256": sha256(data)},
                expected_size=len(data),
            )
            for path, data in FILES.items()
        ]
        results = await engine.download_many(requests)
    out = dict(zip(FILES, results, strict=True))
    for path, result in out.items():
        assert result.path is not None
        assert result.path.read_bytes() == FILES[path]
        assert result.digests["sha256"] == sha256(FILES[path])
        assert result.url.endswith("/" + path)
    return out


async def test_metalink_skips_the_stale_mirror_and_fails_over_per_file(
    tmp_path: Path, mirrors: Mirrors, caplog: pytest.LogCaptureFixture
) -> None:
    url = _publish(
        mirrors.good1,
        "metalink.xml",
        _metalink(
            [
                (mirrors.stale.base_url, 100),
                (mirrors.down, 99),
                (mirrors.good2.base_url, 98),
                (mirrors.good1.base_url, 10),
            ]
        ),
    )
    caplog.set_level(logging.DEBUG, logger="pulp_aio_download")
    remote = pad.RemoteConfig(name="fedora", mirrorlist=url, retry=NO_RETRY)
    results = await _fetch_all(tmp_path, remote)

    # a.rpm: the stale mirror is never asked for it, the down one fails, good2 serves it.
    assert results["Packages/a.rpm"].url == f"{mirrors.good2.base_url}/Packages/a.rpm"
    # b.rpm: good2 answers 404, so it fails over to good1.
    assert results["Packages/b.rpm"].url == f"{mirrors.good1.base_url}/Packages/b.rpm"
    assert mirrors.packages_served(mirrors.stale) == []
    assert mirrors.stale.requests() == ["GET /repodata/repomd.xml 200"]
    assert "GET /Packages/b.rpm 404" in mirrors.packages_served(mirrors.good2)
    assert mirrors.packages_served(mirrors.good1) == ["GET /Packages/b.rpm 200"]
    log = caplog.text
    assert f"mirror {mirrors.stale.base_url}/ is stale and skipped: repomd.xml md5 is" in log
    assert f"keeping mirror {mirrors.down}/ unchecked" in log
    assert f"picked {mirrors.good2.base_url}/Packages/a.rpm" in log or (
        f"picked {mirrors.down}/Packages/a.rpm" in log
    )


async def test_yum_mirrorlist_and_base_urls(tmp_path: Path, mirrors: Mirrors) -> None:
    url = _publish(
        mirrors.good1,
        "mirrorlist",
        f"# repo = fedora-40 arch = x86_64\n\n{mirrors.good2.base_url}/\n"
        f"ftp://old.example/fedora/\n",
    )
    remote = pad.RemoteConfig(
        name="fedora", mirrorlist=url, mirrors=(mirrors.good1.base_url,), retry=NO_RETRY
    )
    results = await _fetch_all(tmp_path, remote)
    # good2 has no b.rpm: whichever mirror was drawn first, good1 ends up serving it.
    assert results["Packages/b.rpm"].url == f"{mirrors.good1.base_url}/Packages/b.rpm"
    assert results["Packages/a.rpm"].url in {
        f"{mirrors.good1.base_url}/Packages/a.rpm",
        f"{mirrors.good2.base_url}/Packages/a.rpm",
    }


async def test_base_urls_fail_over_from_a_down_mirror(tmp_path: Path, mirrors: Mirrors) -> None:
    remote = pad.RemoteConfig(
        name="m", mirrors=(mirrors.down, mirrors.good1.base_url), retry=NO_RETRY
    )
    results = await _fetch_all(tmp_path, remote)
    assert {r.url for r in results.values()} == {
        f"{mirrors.good1.base_url}/{path}" for path in FILES
    }
    assert sorted(mirrors.packages_served(mirrors.good1)) == [
        "GET /Packages/a.rpm 200",
        "GET /Packages/b.rpm 200",
    ]


async def test_every_mirror_stale(tmp_path: Path, mirrors: Mirrors) -> None:
    url = _publish(mirrors.good1, "metalink.xml", _metalink([(mirrors.stale.base_url, 100)]))
    remote = pad.RemoteConfig(name="fedora", mirrorlist=url, retry=NO_RETRY)
    async with make_engine(tmp_path, remote) as engine:
        with pytest.raises(
            pad.AllSourcesFailed, match=re.escape("no usable mirror for 'Packages/a.rpm'")
        ):
            await engine.download(
                pad.DownloadRequest(relative_path="Packages/a.rpm", remote="fedora")
            )
    assert list((tmp_path / "store").rglob("*.rpm")) == []


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad", "http://127.0.0.1:1/ok/\nnot a url\n", "line 2: mirrorlist: 'not a url'"),
        ("empty", "# nothing\n\n", "mirrorlist lists no http or https mirror"),
        ("broken.xml", "<metalink><files>", "metalink is not valid XML"),
        ("nofile.xml", "<metalink><files/></metalink>", 'no <file name="repomd.xml">'),
    ],
)
async def test_malformed_lists(
    tmp_path: Path, mirrors: Mirrors, name: str, text: str, message: str
) -> None:
    url = _publish(mirrors.good1, name, text)
    remote = pad.RemoteConfig(name="fedora", mirrorlist=url, retry=NO_RETRY)
    with pytest.raises(pad.ManifestError, match=re.escape(message)) as info:
        async with make_engine(tmp_path, remote):
            pass
    assert info.value.url == url


async def test_unreachable_mirrorlist_names_the_setting(tmp_path: Path, mirrors: Mirrors) -> None:
    remote = pad.RemoteConfig(name="fedora", mirrorlist=f"{mirrors.good1.base_url}/none")
    with pytest.raises(pad.HTTPStatusError, match=re.escape("RemoteConfig.mirrorlist: HTTP 404")):
        async with make_engine(tmp_path, remote):
            pass
    gone = pad.RemoteConfig(name="fedora", mirrorlist=f"{mirrors.down}/list")
    with pytest.raises(
        pad.ConnectionFailed, match=re.escape("remote 'fedora': RemoteConfig.mirrorlist")
    ):
        async with make_engine(tmp_path, gone):
            pass


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mirrors": ("ftp://host/x",)}, "RemoteConfig.mirrors must be http or https"),
        ({"mirrors": "http://host/"}, "RemoteConfig.mirrors must be a list of base URLs"),
        ({"mirrorlist": "file:///etc/list"}, "RemoteConfig.mirrorlist must be http or https"),
        ({"mirrorlist_kind": "yum"}, "RemoteConfig.mirrorlist_kind must be one of"),
    ],
)
def test_bad_settings(fields: dict[str, object], message: str) -> None:
    with pytest.raises(pad.ConfigError, match=re.escape(message)):
        pad.RemoteConfig(name="r", **fields)  # type: ignore[arg-type]


async def test_relative_path_needs_mirrors(tmp_path: Path) -> None:
    with pytest.raises(pad.ConfigError, match="relative_path"):
        pad.DownloadRequest(relative_path="../etc/passwd")
    async with make_engine(tmp_path) as engine:
        with pytest.raises(pad.ConfigError, match="needs remote 'default' to have"):
            await engine.download(pad.DownloadRequest(relative_path="Packages/a.rpm"))
