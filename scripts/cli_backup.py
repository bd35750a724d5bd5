"""``idnode backup``: create, verify and restore encrypted, signed archives
of a node's records; ``keygen`` makes a recipient key pair; ``escrow``
backs up for the parent node's key and uploads it there; ``digest`` prints
the digest over all records that ``restore`` prints too."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from idcore.errors import IdnodeError, UpstreamUnavailable
from idcore.settings import DATABASE_NAME
from registry.backup.archive import DEFAULT_VOLUME_BYTES
from registry.backup.digest import records_digest
from registry.backup.errors import ArchiveInvalid, WrongRecipientKey
from registry.backup.folder import backup_node, own_prefix, restore_node
from registry.backup.manifest import DIFF, FULL
from registry.backup.verify import verify_archive
from registry.escrow import child_identity
from registry.node_key import (
    generate_recipient,
    load_recipient_private,
    load_recipient_public,
    load_signer_public,
    node_key,
    public_pem,
)
from registry.sqlite_store import SqliteStore
from resolver.escrow_client import EscrowRefused, escrow_backup
from scripts.cli_common import EXIT_LOCAL, EXIT_REFUSED, EXIT_UNREACHABLE, CliError, read_secret


def add_parser(commands: Any) -> None:
    backup = commands.add_parser("backup", help="encrypted, signed FULL/DIFF backups of a node; verify; restore")
    sub = backup.add_subparsers(dest="backup_command", required=True, metavar="ACTION")

    create = sub.add_parser("create", help="write a FULL or DIFF archive of a node's records")
    create.add_argument("--data", default="idnode-data", help="the node's data folder (default: %(default)s)")
    kind = create.add_mutually_exclusive_group(required=True)
    kind.add_argument("--full", dest="kind", action="store_const", const=FULL, help="every record")
    kind.add_argument("--diff", dest="kind", action="store_const", const=DIFF, help="changes since the last backup")
    create.add_argument("--to", required=True, help="folder to write the archive folder into")
    create.add_argument("--recipient", required=True, help="recipient's X25519 public key (PEM)")
    create.add_argument("--volume-size", type=int, default=DEFAULT_VOLUME_BYTES,
                        help="plaintext bytes per part/volume (default: %(default)s)")
    create.set_defaults(run=create_cmd)

    verify = sub.add_parser("verify", help="check an archive's signature, parts, hashes and counts")
    verify.add_argument("archive", help="archive folder")
    verify.add_argument("--recipient-key", required=True, help="recipient's X25519 private key (PEM)")
    verify.add_argument("--signer-pub", help="the node's Ed25519 public key (PEM) the archive must be signed by")
    verify.set_defaults(run=verify_cmd)

    restore = sub.add_parser("restore", help="restore a FULL and its DIFFs into an empty node")
    restore.add_argument("archives", nargs="+", metavar="ARCHIVE", help="archive folders (any order)")
    restore.add_argument("--data", required=True, help="the new node's data folder (must be empty)")
    restore.add_argument("--recipient-key", required=True, help="recipient's X25519 private key (PEM)")
    restore.add_argument("--signer-pub", help="the node's Ed25519 public key (PEM) the archives must be signed by")
    restore.set_defaults(run=restore_cmd)

    digest = sub.add_parser("digest", help="print the SHA-256 digest over all of a node's records")
    digest.add_argument("--data", default="idnode-data", help="the node's data folder (default: %(default)s)")
    digest.set_defaults(run=digest_cmd)

    keygen = sub.add_parser("keygen", help="make a recipient X25519 key pair (recipient_key.pem, recipient_pub.pem)")
    keygen.add_argument("--out", required=True, help="folder to write the two PEM files into")
    keygen.set_defaults(run=keygen_cmd)

    escrow = sub.add_parser("escrow", help="back up for the parent node's escrow key and upload it there")
    escrow.add_argument("--data", default="idnode-data", help="the node's data folder (default: %(default)s)")
    escrow.add_argument("--parent", required=True, help="the parent node's base URL")
    ekind = escrow.add_mutually_exclusive_group()
    ekind.add_argument("--full", dest="kind", action="store_const", const=FULL, help="every record")
    ekind.add_argument("--diff", dest="kind", action="store_const", const=DIFF,
                       help="changes since the last escrowed archive (the default once one was escrowed)")
    escrow.add_argument("--prefix", help="this node's prefix (default: the one it homes)")
    escrow.add_argument("--id", dest="identity", help="identity at the parent (default: 300:0.NA/<prefix>)")
    escrow.add_argument("--secret-file", help="file holding that identity's secret (env IDNODE_ESCROW_SECRET)")
    escrow.add_argument("--volume-size", type=int, default=DEFAULT_VOLUME_BYTES,
                        help="plaintext bytes per part/volume (default: %(default)s)")
    escrow.set_defaults(run=escrow_cmd)

    pub = sub.add_parser("node-pub", help="print the node's Ed25519 public key (PEM), for --signer-pub")
    pub.add_argument("--data", default="idnode-data", help="the node's data folder (default: %(default)s)")
    pub.set_defaults(run=node_pub_cmd)


def _database(data: str) -> Path:
    path = Path(data) / DATABASE_NAME
    if not path.exists():
        raise CliError(f"no node database at {path}")
    return path


def _local(exc: IdnodeError) -> CliError:
    return CliError(exc.message, EXIT_LOCAL)


async def create_cmd(args: argparse.Namespace) -> int:
    try:
        recipient = load_recipient_public(Path(args.recipient))
        async with SqliteStore(_database(args.data)) as store:
            result = await backup_node(
                store, Path(args.data), kind=args.kind, out_dir=Path(args.to), recipient=recipient,
                volume_bytes=args.volume_size,
            )
    except IdnodeError as exc:
        raise _local(exc) from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    m = result.manifest
    print(f"archive:   {result.folder}")
    print(f"kind:      {m.kind}, watermark {m.watermark_from}..{m.watermark_to}")
    print(f"contents:  {m.records} records, {m.deleted} deletions in {len(m.parts)} part(s)")
    print(f"signed by: {m.node_fingerprint}")
    return 0


def verify_cmd(args: argparse.Namespace) -> int:
    try:
        recipient = load_recipient_private(Path(args.recipient_key))
        signer = load_signer_public(Path(args.signer_pub)) if args.signer_pub else None
        m = verify_archive(Path(args.archive), recipient, signer)
    except (ArchiveInvalid, WrongRecipientKey) as exc:
        raise CliError(f"{args.archive}: {exc.message}") from None
    except IdnodeError as exc:
        raise _local(exc) from None
    print(f"{args.archive}: OK: {m.kind}, watermark {m.watermark_from}..{m.watermark_to},"
          f" {m.records} records, {m.deleted} deletions, {len(m.parts)} part(s), signed by {m.node_fingerprint}")
    return 0


async def restore_cmd(args: argparse.Namespace) -> int:
    data = Path(args.data)
    try:
        recipient = load_recipient_private(Path(args.recipient_key))
        signer = load_signer_public(Path(args.signer_pub)) if args.signer_pub else None
        data.mkdir(parents=True, exist_ok=True)
        async with SqliteStore(data / DATABASE_NAME) as store:
            result = await restore_node(
                store, [Path(a) for a in args.archives], recipient, signer, remedy=f"delete {data} before trying again"
            )
    except IdnodeError as exc:
        raise _local(exc) from None
    for m in result.applied:
        print(f"restored {m.kind} {m.watermark_from}..{m.watermark_to}: {m.records} records, {m.deleted} deletions")
    print(f"digest: {result.digest} ({result.records} records)")
    return 0


async def digest_cmd(args: argparse.Namespace) -> int:
    async with SqliteStore(_database(args.data)) as store:
        digest, count = await records_digest(store)
    print(f"digest: {digest} ({count} records)")
    return 0


def keygen_cmd(args: argparse.Namespace) -> int:
    try:
        private, public = generate_recipient(Path(args.out))
    except IdnodeError as exc:
        raise _local(exc) from None
    print(f"private key: {private} (readable by you only; keep it away from the node)")
    print(f"public key:  {public} (give it to 'idnode backup create --recipient')")
    return 0


def node_pub_cmd(args: argparse.Namespace) -> int:
    try:
        key = node_key(Path(args.data))
    except IdnodeError as exc:
        raise _local(exc) from None
    sys.stdout.write(public_pem(key.public_key()).decode("ascii"))
    return 0


async def escrow_cmd(args: argparse.Namespace) -> int:
    data = Path(args.data)
    secret = read_secret(args.secret_file, "IDNODE_ESCROW_SECRET")
    if not secret:
        raise CliError("give the secret of the node's identity at the parent (--secret-file or IDNODE_ESCROW_SECRET)")
    try:
        async with SqliteStore(_database(args.data)) as store:
            prefix = await own_prefix(store, args.prefix, option="--prefix")
            identity = args.identity or child_identity(prefix).to_text()
            result = await escrow_backup(
                store, data, args.parent, child=prefix, identity=identity, secret=secret, kind=args.kind,
                volume_bytes=args.volume_size,
            )
    except UpstreamUnavailable as exc:
        raise CliError(exc.message, EXIT_UNREACHABLE) from None
    except EscrowRefused as exc:
        raise CliError(exc.message, EXIT_REFUSED) from None
    except IdnodeError as exc:
        raise _local(exc) from None
    m = result.backup.manifest
    print(f"escrowed:  {result.backup.folder.name} at {args.parent} ({result.reply['archive']['status']})")
    print(f"kind:      {m.kind}, watermark {m.watermark_from}..{m.watermark_to}")
    print(f"contents:  {m.records} records, {m.deleted} deletions in {len(m.parts)} part(s)")
    return 0
