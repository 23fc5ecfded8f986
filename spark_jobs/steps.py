"""Steps: the plain-Python unit of every stage; a stage is a list of them.

A step is any object with one of two methods:

* ``filter(doc) -> str | None``: return a drop reason, or None to keep the document;
* ``map(doc) -> doc``: return the (possibly changed) document. A map step that finds it
  cannot produce a document raises :class:`Drop` with a reason (e.g. a page that does
  not decode), so that the loss is counted like any filter's.

Documents are plain dicts, so a unit test calls a step directly, without Spark. The
runner (:mod:`spark_jobs.runner`) turns a list of steps into Spark work.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

Doc = dict[str, Any]

_REASON_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Drop(Exception):
    """Raised by a map step to drop the document with a named reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = check_reason(reason)


def check_reason(reason: str) -> str:
    """Reasons become folder names (removed/{reason}/) and manifest keys: keep them snake_case."""
    if not isinstance(reason, str) or not _REASON_RE.match(reason):
        raise ValueError(f"drop reason {reason!r} must be snake_case (a-z, 0-9, _), e.g. 'too_few_words'")
    return reason


def step_name(step: object) -> str:
    return getattr(step, "name", type(step).__name__)


def apply_steps(doc: Doc, steps: Iterable[object]) -> tuple[Doc, str | None]:
    """Run one document through the steps; stop at the first drop.

    Returns the document as far as it got and the drop reason (None when kept), so the
    runner can write dropped documents aside with their reason.
    """
    for step in steps:
        if hasattr(step, "filter"):
            reason = step.filter(doc)
            if reason is not None:
                return doc, check_reason(reason)
        elif hasattr(step, "map"):
            try:
                doc = step.map(doc)
            except Drop as drop:
                return doc, drop.reason
        else:
            raise TypeError(f"step {step_name(step)} has neither filter(doc) nor map(doc)")
    return doc, None
