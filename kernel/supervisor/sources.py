"""Watching plugin source code for ``kernel serve --dev``: which files, and when they changed.

A plugin's sources are the top-level packages of its entry point and of its modules'
entry points, wherever they are imported from: an editable install, a folder on
``PYTHONPATH``. Packages inside the interpreter's site-packages (regular installs) are
not watched: nobody edits those. The watcher polls file times and sizes (no extra
dependency, a few hundred files at most) and reports a plugin once its files have
stopped changing for one poll, so an editor's several writes make one reload.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sysconfig
from collections.abc import Callable, Iterable
from pathlib import Path

from kernel.registry import PluginEntry

log = logging.getLogger("kernel")
POLL = 0.25

Snapshot = dict[str, tuple[int, int]]


def _installed_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    return [Path(paths[k]).resolve() for k in ("purelib", "platlib") if k in paths]


def source_roots(entry: PluginEntry) -> list[Path]:
    """The folders (or single files) holding the code of a plugin and its modules, if editable."""
    installed = _installed_dirs()
    modules = [entry.module, *(_module_of(m.entry_point) for m in entry.modules)]
    roots: list[Path] = []
    for top in dict.fromkeys(m.split(".")[0] for m in modules):
        for place in places_of(top):
            path = Path(place).resolve()
            if not any(path.is_relative_to(d) for d in installed) and path not in roots:
                roots.append(path)
    return roots


def places_of(top: str) -> list[str]:
    """Where top-level module ``top`` lives, found without importing it: its package's folders, or its
    file; nothing when it cannot be found."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    return list(spec.submodule_search_locations or []) or ([spec.origin] if spec.origin else [])


def _module_of(entry_point: str) -> str:
    return entry_point.split("=", 1)[1].split(":", 1)[0].strip()


def snapshot(roots: Iterable[Path]) -> Snapshot:
    """(mtime, size) of every Python file under ``roots``."""
    found: Snapshot = {}
    for root in roots:
        files = [root] if root.is_file() else root.rglob("*.py")
        for f in files:
            try:
                st = f.stat()
            except OSError:  # removed while we looked
                continue
            found[str(f)] = (st.st_mtime_ns, st.st_size)
    return found


class SourceWatcher:
    """Calls ``on_change(plugin_id, changed_files)`` when a plugin's sources changed and settled."""

    def __init__(self, roots: dict[str, list[Path]], on_change: Callable[[str, list[str]], None]) -> None:
        self.roots = {pid: r for pid, r in roots.items() if r}
        self.on_change = on_change

    async def run(self) -> None:
        for pid, roots in self.roots.items():
            log.info("--dev: watching plugin '%s' in %s", pid, ", ".join(str(r) for r in roots))
        seen = {pid: snapshot(r) for pid, r in self.roots.items()}
        pending: dict[str, Snapshot] = {}
        while True:
            await asyncio.sleep(POLL)
            for pid, roots in self.roots.items():
                now = await asyncio.to_thread(snapshot, roots)
                if now == seen[pid]:
                    pending.pop(pid, None)
                elif pending.get(pid) == now:  # changed, then still for one poll: settled
                    changed = sorted(k for k in now.keys() | seen[pid].keys() if now.get(k) != seen[pid].get(k))
                    seen[pid] = now
                    del pending[pid]
                    self.on_change(pid, changed)
                else:
                    pending[pid] = now
