"""Knowledge: the store (nouns, hash-chained audit log, named state) and its migrations."""

from autonomic.knowledge.audit import AuditReport
from autonomic.knowledge.store import Store

__all__ = ["AuditReport", "Store"]
