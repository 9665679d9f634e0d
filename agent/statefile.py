"""Durable JSON files in the agent's state directory, owned by the agent's user.

Containment state must survive a crash at any instant, so every write goes to
a temporary file that is fsynced and then renamed over the old one (and the
directory is fsynced), leaving either the old or the new content, never a mix.

The state directory belongs to the agent's user. A command run as root (the
documented ``sudo lz-agent break-glass``) must not leave root-owned files that
the agent can no longer write, so every file created here is handed to the
directory's owner with mode 0600 (:func:`adopt`), and :func:`repair` gives back
any file that still has another owner when the agent starts.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("lz.agent.state")


def write_json(path: Path, data: Any) -> None:
    """Atomically replace ``path`` with ``data`` as JSON (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        adopt(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_json(path: Path) -> Any | None:
    """The JSON content of ``path``, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def remove(path: Path) -> None:
    """Delete ``path`` if present and make the deletion durable."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def adopt(path: Path) -> None:
    """Give ``path`` to the owner of its directory, mode 0600 (0700 for a directory), when run as root."""
    if os.geteuid() != 0:
        return
    try:
        owner = path.parent.stat()
        if owner.st_uid != 0 or owner.st_gid != 0:
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    except OSError as exc:
        log.warning("cannot hand %s to the state directory's owner: %s", path, exc)


def repair(state_dir: Path) -> list[str]:
    """Give every file under ``state_dir`` back to the directory's owner, private to it; what was repaired.

    The owner's permission bits are kept and the group's and others' removed (a root-made 0644 file
    becomes 0600).

    As root this is a chown. As the agent's user (who owns the directory and, under the systemd unit, can
    read any file with CAP_DAC_READ_SEARCH) a foreign file is copied to a new file of ours and renamed over
    it; one that cannot be read is moved aside with an error, so it no longer stops the agent.
    """
    try:
        owner = state_dir.stat()
    except OSError:
        return []
    repaired: list[str] = []
    for directory, _dirs, names in os.walk(state_dir):
        for name in names:
            path = Path(directory) / name
            try:
                info = path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            private = stat.S_IMODE(info.st_mode) & 0o077 == 0
            if (info.st_uid, info.st_gid) == (owner.st_uid, owner.st_gid) and private:
                continue
            if _give_back(path, owner.st_uid, owner.st_gid, stat.S_IMODE(info.st_mode) & 0o700 or 0o600):
                repaired.append(str(path.relative_to(state_dir)))
    if repaired:
        log.warning("state files given back to the agent's user: %s", ", ".join(repaired))
    return repaired


def _give_back(path: Path, uid: int, gid: int, mode: int) -> bool:
    """Owner ``uid``/``gid`` and ``mode`` (the owner's bits kept, nobody else's) for ``path``."""
    if os.geteuid() == 0:
        try:
            os.chown(path, uid, gid, follow_symlinks=False)
            os.chmod(path, mode)
            return True
        except OSError as exc:
            log.error("cannot repair %s: %s", path, exc)
            return False
    if os.geteuid() != uid:
        return False
    try:
        data = path.read_bytes()
    except OSError as exc:
        aside = path.with_name(f"{path.name}.unreadable")
        log.error("%s cannot be read (%s); moved aside to %s", path, exc.strerror, aside.name)
        try:
            os.replace(path, aside)
        except OSError:
            return False
        return True
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        log.error("cannot repair %s: %s", path, exc)
        return False
    return True
