"""One writer per run folder.

Two ``spikediff train`` processes on one ``--out`` (a run and its ``--resume`` started by mistake in a
second terminal) would both write ``step_N`` checkpoints and interleave ``log.jsonl``; the second is
refused instead, with the first one's process id and command line. The lock is ``flock`` on a file in
the run folder: the kernel releases it when its process ends in any way (SIGKILL included), so a killed
run never leaves a lock behind that a human has to delete, and the file left on disk means nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".writer.lock"


class RunInUse(OSError):
    """Another process is writing the run folder (an OSError, like the EBUSY of a device in use)."""


@contextlib.contextmanager
def exclusive_writer(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir``'s writer lock (creating the folder) until the block ends; a folder held by another
    live process raises :class:`RunInUse` naming that process."""
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_FILE
    handle = open(path, "a+")
    held = False
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise RunInUse(f"{out_dir} is being written by {_holder(handle.read())}; wait for it to end or stop it, "
                           "or train into another --out") from None
        held = True
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        yield
    finally:
        if held and [f.name for f in out_dir.iterdir()] == [LOCK_FILE]:  # a start that failed leaves nothing
            path.unlink()
            if created:
                out_dir.rmdir()
        handle.close()  # closing releases the flock


def _holder(text: str) -> str:
    """Who holds the lock, as its file says ("another process" when the file is unreadable)."""
    try:
        who = json.loads(text)
        return f"process {who['pid']} on {who['host']} ({who['command']}, since {who['since']})"
    except (ValueError, KeyError, TypeError):
        return "another process"
