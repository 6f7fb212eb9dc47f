"""The shared data dir between processes: change tokens, retiring and sweeping versions."""

from __future__ import annotations

import os
import time
from pathlib import Path

from wasmlambda.kernel._changes import ChangeToken
from wasmlambda.kernel._registry import Registry


def test_a_change_is_seen_once_by_every_process_including_its_author(tmp_path: Path) -> None:
    author, sibling = ChangeToken(tmp_path), ChangeToken(tmp_path)
    assert not author.take() and not sibling.take()
    author.announce()
    assert sibling.take() and author.take()  # the author re-reads too: a sibling's change may precede its own
    assert not sibling.take() and not author.take()
    sibling.announce()
    author.announce()  # two changes before anyone looked: one re-read covers both
    assert sibling.take() and not sibling.take()
    author.close()
    sibling.close()


def test_retired_versions_are_swept_only_after_the_grace_period(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    old, fresh, live = (registry.store / name for name in ("old-1", "fresh-2", "live-3"))
    for directory in (old, fresh, live):
        (directory / "code").mkdir(parents=True)
    (registry.links / "live").symlink_to(Path("..") / "store" / live.name)
    registry.retire(old)
    registry.retire(fresh)
    retired = sorted(entry for entry in registry.store.iterdir() if entry.name.startswith(".retired-"))
    assert len(retired) == 2 and not old.exists()
    long_ago = time.time() - 3600
    os.utime(retired[0], (long_ago, long_ago))
    os.utime(live, (long_ago, long_ago))  # old but linked: kept
    registry.sweep(grace_s=600)
    assert sorted(entry.name for entry in registry.store.iterdir()) == sorted([retired[1].name, live.name])
    registry.retire(old)  # already gone (a sibling retired it): no error
