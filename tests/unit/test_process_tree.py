"""The one walk up and the one walk down a process tree, on listed parents."""

from __future__ import annotations

import os

from scheduler_failover_controller.leash.procs import Proc, descendants
from scheduler_failover_controller.process_tree import (
    ancestors,
    below,
    descendant_levels,
    kernel_ppid,
    root_pids,
)

# 1 -> 10 -> 20 -> 30 -> 40; 10 -> 21 -> 31; 1 -> 11
PARENTS = {1: 0, 10: 1, 11: 1, 20: 10, 21: 10, 30: 20, 31: 21, 40: 30}


def test_ancestors_nearest_first_and_bounded() -> None:
    assert list(ancestors(40, PARENTS.get)) == [30, 20, 10, 1]
    assert list(ancestors(40, PARENTS.get, limit=2)) == [30, 20]
    assert list(ancestors(99, PARENTS.get)) == []  # not listed: no parent known
    loop = {5: 6, 6: 5}
    assert len(list(ancestors(5, loop.get))) == 256  # parents that loop end at the bound


def test_below_and_the_tops_of_trees() -> None:
    assert below(40, PARENTS.get, {10}) and not below(40, PARENTS.get, {40}) and not below(40, PARENTS.get, set())
    assert root_pids([20, 30, 40, 31, 11], PARENTS.get) == {20, 31, 11}


def test_descendants_level_by_level_with_subtrees_pruned() -> None:
    assert descendant_levels(PARENTS, [10]) == [[20, 21], [30, 31], [40]]
    assert descendant_levels(PARENTS, [10], exclude={20}) == [[21], [31]]
    assert descendant_levels(PARENTS, [40]) == []
    # the leash's view of /proc walks the same way
    table = {pid: Proc(ppid, 0, 0, "S") for pid, ppid in PARENTS.items()}
    assert descendants(table, [10], {21}) == [20, 30, 40]


def test_the_kernel_walk_reaches_this_process_parent() -> None:
    assert next(ancestors(os.getpid(), kernel_ppid())) == os.getppid()
