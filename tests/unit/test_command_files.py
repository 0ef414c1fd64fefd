"""The file command store never loses a command: clearing a consumed one (read the pending file,
remove it if it is still that command) and writing a newer one run in worker threads at the same
time when an operator sends the next command right as the previous one takes effect."""

from __future__ import annotations

import threading
from pathlib import Path

from federation.hub.commands import Commands

KEY = "shop/frontend"


def test_a_command_written_while_the_previous_is_cleared_is_kept(tmp_path: Path):
    store = Commands(tmp_path)
    first = {"command": "abort", "id": "first", "at": 1.0}
    store._put(KEY, first)
    newer_written = threading.Event()
    real_read = store._read

    def read_then_let_the_newer_command_in(path: Path):  # type: ignore[no-untyped-def]
        got = real_read(path)
        if path == store._path(KEY):
            # The operator's next command arrives now. Without the store's lock it is written at
            # once and then removed with the cleared one; with it, it waits for the clearing.
            newer_written.wait(timeout=2.0)
        return got

    store._read = read_then_let_the_newer_command_in  # type: ignore[method-assign]
    writer = threading.Thread(target=lambda: (store._put(KEY, {"command": "retry", "id": "second", "at": 2.0}),
                                              newer_written.set()))
    clearer = threading.Thread(target=store._done, args=(KEY, "first", {"command": "abort", "state": "accepted",
                                                                        "message": "rolled back"}))
    clearer.start()
    writer.start()
    clearer.join(timeout=30)
    writer.join(timeout=30)
    assert not clearer.is_alive() and not writer.is_alive()
    store._read = real_read  # type: ignore[method-assign]
    pending = store._read(store._path(KEY))
    assert pending is not None and pending["id"] == "second", pending
