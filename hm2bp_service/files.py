"""Files of the service are its owner's only: the data folder, the SQLite database, artifacts,
uploads, the embedded Redis's files and ``hm2bp serve``'s token file.

``owner_only_files`` is called first by every process that writes them (``hm2bp serve``, the API,
a worker, the admin commands): it sets the process's umask to 077, which its children inherit, and
makes the data folder mode 0700.
"""

from __future__ import annotations

import os

from .settings import Settings

OWNER_ONLY_UMASK = 0o077


def owner_only_files(settings: Settings) -> None:
    os.umask(OWNER_ONLY_UMASK)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if settings.data_dir.stat().st_uid == os.getuid():
        settings.data_dir.chmod(0o700)  # a folder made before (under another umask) is closed as well
