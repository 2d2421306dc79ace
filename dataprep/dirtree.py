"""The directory update of a pack (SPEC §8.1), run inside the job's completion.

For each file whose CID became known, its directory and every ancestor up to the root are
loaded (once each) into an in-memory tree; the file is added to its directory (replacing
an entry of the same name, keeping a split file's parent blocks); then the tree is resolved
children first, each child directory becoming an entry (name, node CID, cumulative size)
of its parent; every touched directory is written back with `exported = false`.

Names: `directories.name` and `files.path` hold escaped text (`dataprep.source`); entry
names in dag-pb links are the raw bytes.

Directories that never get a file (empty ones) get no node and stay out of the DAG, as in
Singularity (SPEC §8.1), so the root CID is Singularity's; DagGen marks them exported.
"""
from __future__ import annotations

from typing import Sequence

from dataprep.directory import name_text
from dataprep.dirstate import DirectoryState
from dataprep.source import unescape_name
from storage import dag
from storage.db import Database
from storage.packing import UpdatedFile


class _Node:
    __slots__ = ("row", "state", "children")

    def __init__(self, row: dag.DirRow) -> None:
        self.row = row
        self.state = DirectoryState.from_bytes(row.data)
        self.children: dict[int, None] = {}


def entry_name(escaped: str) -> str:
    """The entry name for `dataprep.directory` (text that encodes to the raw bytes)."""
    return name_text(unescape_name(escaped))


def update_directories(db: Database, attachment_id: int,
                       files: Sequence[UpdatedFile]) -> int:
    """Add the files to their directories and re-resolve up to the root; returns the number
    of directories written. Must run inside a transaction."""
    root = dag.lock_root(db, attachment_id)
    tree: dict[int, _Node] = {root.id: _Node(root)}
    for f in files:
        if f.directory_id is None:
            continue
        dir_id: int | None = f.directory_id
        child: int | None = None
        while dir_id is not None:
            node = tree.get(dir_id)
            known = node is not None
            if node is None:
                node = tree[dir_id] = _Node(dag.load_directory(db, dir_id))
            if child is not None:
                node.children[child] = None
            if known:
                break  # its chain up to the root is registered already
            child, dir_id = dir_id, node.row.parent_id
        name = f.path.rpartition("/")[2]
        tree[f.directory_id].state.add_file(entry_name(name), f.cid, f.size, f.blocks)
    # Resolve children before parents (iterative post-order from the root).
    order: list[int] = []
    stack = [(root.id, False)]
    while stack:
        dir_id, expanded = stack.pop()
        if expanded:
            order.append(dir_id)
            continue
        stack.append((dir_id, True))
        stack.extend((c, False) for c in tree[dir_id].children)
    for dir_id in order:
        node = tree[dir_id]
        built = node.state.node()
        parent_id = node.row.parent_id
        if parent_id is not None and parent_id in tree:
            tree[parent_id].state.add_child(entry_name(node.row.name), built)
        dag.save_directory(db, dir_id, built.cid, node.state.to_bytes())
    return len(order)
