"""Files written whole or not at all: a kill or an error mid-write never leaves a partial file
under the final name."""

import os
import re
from typing import Callable, List, Tuple

_TEMPORARY = re.compile(r"^(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def write_atomically(path: str, write) -> None:
    """Write through ``write(binary_file)`` into a temporary file beside ``path``, flush it to
    disk, then rename it over ``path``; on an error the temporary file is removed."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_leftovers(folder: str, written_here: Callable[[str], bool]) -> List[Tuple[str, int]]:
    """Remove the temporary files of :func:`write_atomically` that a killed process left in ``folder``:
    ``NAME.tmp-PID`` for the NAMEs ``written_here`` accepts, whose process is gone or is this one (which
    writes those files one at a time, so none of its own is in flight). Their paths and sizes."""
    removed = []
    for entry in os.scandir(folder):
        match = _TEMPORARY.match(entry.name)
        if not match or not written_here(match["name"]) or not entry.is_file():
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and _alive(pid):
            continue
        size = entry.stat().st_size
        os.remove(entry.path)
        removed.append((entry.path, size))
    return removed
