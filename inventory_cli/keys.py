"""`inventory keys create|list|revoke`: manage the API keys of a data directory.

Works on the key file directly, without Ray; running servers see the change within a second.
Wire it in with `add_keys_parser(commands)`; the parser's handler is `run_keys`.
"""

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from serve_app.keys import KeyStore, Role

DEFAULT_DATA_DIR = "./data"
ROLE_LABELS = [role.label for role in Role]


def add_keys_parser(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Add `keys` and its subcommands; `args.handler` is `run_keys`."""
    keys = subparsers.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="create a key and print it once")
    create.add_argument("--role", required=True, choices=ROLE_LABELS)
    listing = actions.add_parser("list", help="list keys (never their secrets)")
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id", metavar="ID")
    for action in (create, listing, revoke):
        action.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    keys.set_defaults(handler=run_keys)
    return keys


def run_keys(args: argparse.Namespace) -> int:
    store = KeyStore.open(args.data_dir)
    if args.keys_command == "create":
        record, presented = store.create(Role.parse(args.role))
        print(f"id:   {record.key_id}")
        print(f"role: {record.role.label}")
        print(f"key:  {presented}")
        print("The key is shown only now; the store keeps only its hash.")
        return 0
    if args.keys_command == "list":
        print(f"{'id':<12}  {'role':<6}  {'created':<20}  revoked")
        for record in store.list():
            revoked = "-" if record.revoked_at is None else _when(record.revoked_at)
            print(
                f"{record.key_id:<12}  {record.role.label:<6}  "
                f"{_when(record.created_at):<20}  {revoked}"
            )
        return 0
    if args.keys_command == "revoke":
        if not store.revoke(args.key_id):
            print(f"no key with id {args.key_id!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.key_id}")
        return 0
    raise AssertionError(f"unknown keys command {args.keys_command!r}")


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m inventory_cli.keys keys ...`, the same as `inventory keys ...`."""
    parser = argparse.ArgumentParser(prog="inventory")
    add_keys_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
