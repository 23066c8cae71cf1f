"""Files written whole or not at all: a kill or an error mid-write never leaves a partial file
under the final name."""

import os


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
