"""SQLAlchemy tables of the record store; importing this package registers every table."""

from api.models.base import Base
from api.models.job import Job, PeriodicRun
from api.models.user import AuditEntry, RefreshToken, User

__all__ = ["AuditEntry", "Base", "Job", "PeriodicRun", "RefreshToken", "User"]
