"""pulp_aio_download: an asyncio download engine for content-repository plugins."""

from __future__ import annotations

import logging

from ._version import __version__ as __version__
from .config import EngineConfig as EngineConfig
from .config import ProxyConfig as ProxyConfig
from .config import RemoteConfig as RemoteConfig
from .config import RetryPolicy as RetryPolicy
from .config import Timeouts as Timeouts
from .config import TLSConfig as TLSConfig
from .errors import AllSourcesFailed as AllSourcesFailed
from .errors import ConfigError as ConfigError
from .errors import ConnectionFailed as ConnectionFailed
from .errors import DigestMismatch as DigestMismatch
from .errors import DownloadError as DownloadError
from .errors import DownloadTimeout as DownloadTimeout
from .errors import HookError as HookError
from .errors import HTTPStatusError as HTTPStatusError
from .errors import ProxyError as ProxyError
from .errors import SizeMismatch as SizeMismatch
from .errors import StorageError as StorageError
from .errors import TLSError as TLSError
from .errors import ValidationError as ValidationError
from .models import ContentUnit as ContentUnit
from .models import DownloadRequest as DownloadRequest
from .models import DownloadResult as DownloadResult
from .models import ProgressReport as ProgressReport
from .models import Source as Source
from .models import UnitFile as UnitFile
from .models import UnitSpec as UnitSpec
from .models import VerifyReport as VerifyReport

logging.getLogger(__name__).addHandler(logging.NullHandler())
