"""What can go wrong with a backup, split by where the fault lies."""

from __future__ import annotations

from idcore.errors import IdnodeError


class BackupError(IdnodeError):
    """Root of backup errors."""


class ArchiveInvalid(BackupError):
    """An archive is damaged, incomplete or not an idnode backup.

    Attributes (in ``details``): ``part`` (1-based) and ``name`` of the
    first bad part, when a part is at fault.
    """


class SignatureInvalid(ArchiveInvalid):
    """The manifest's signature does not verify (the manifest was changed,
    or was signed by another key than the one required)."""


class WrongRecipientKey(BackupError):
    """The archive was not encrypted for the key offered to open it."""


class RestoreRefused(BackupError):
    """A restore would not give the source's records: the target is not
    empty, or the archives do not form one unbroken FULL + DIFF chain."""


class NoBaseBackup(BackupError):
    """A DIFF was asked for but no earlier backup is recorded."""
