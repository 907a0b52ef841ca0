"""The order a sweep tunes its problems in, so that each one has related problems tuned before it
(warm starts, :mod:`suite.warm`).

Problems are grouped by (pass, permutation strategy, pattern, dtype), the groups in the order
they first appear; within a group the shapes form a chain of nearest neighbours in log space
(``sum over m, n, k of |log2(x / x')|``), starting at the shape nearest the previous group's last
one (the first group at its first problem). Every backend of a problem stays with it (a plan
takes or skips a problem's backends together), so each (problem, backend) after the first of its
backend has a problem of the same backend just before it: a neighbouring shape of the same pass
and pattern, or the same shape at another pattern or pass.
"""

from __future__ import annotations

import math

from suite.problem import GemmProblem


def shape_distance(a: GemmProblem, b: GemmProblem) -> float:
    """Distance of two problems' shapes in log space."""
    return sum(abs(math.log2(x / y)) for x, y in ((a.m, b.m), (a.n, b.n), (a.k, b.k)))


def _group(p: GemmProblem) -> tuple:
    return (p.pass_, p.perm, p.pattern, p.dtype)


def chain(problems: list[GemmProblem]) -> list[GemmProblem]:
    """``problems`` (each once) grouped and chained as the module says."""
    groups: dict[tuple, list[GemmProblem]] = {}
    for p in dict.fromkeys(problems):
        groups.setdefault(_group(p), []).append(p)
    out: list[GemmProblem] = []
    for members in groups.values():
        left = list(members)
        current = left[0] if not out else min(left, key=lambda p: shape_distance(p, out[-1]))
        while left:
            left.remove(current)
            out.append(current)
            if left:  # ties: the first in the sweep's own order
                current = min(left, key=lambda p: shape_distance(p, out[-1]))
    return out


def order_tasks(tasks: list[tuple[GemmProblem, str]]) -> list[tuple[GemmProblem, str]]:
    """(problem, backend) tasks with the problems chained, each problem's backends together in
    their given order."""
    by_problem: dict[GemmProblem, list[str]] = {}
    for problem, backend in tasks:
        by_problem.setdefault(problem, []).append(backend)
    return [(p, b) for p in chain(list(by_problem)) for b in by_problem[p]]
