"""API keys: who may call the HTTP API, and with which role.

A key is `inv_<key id>_<secret>`; the store (`api-keys.json` in the data directory) keeps only
a salted HMAC of each secret and is replaced atomically, so the CLI can create and revoke keys
while servers run. Format, storage and why an HMAC: docs/http.md, "API keys"."""

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, Self

log = logging.getLogger(__name__)

STORE_FILE = "api-keys.json"
LOCK_FILE = "api-keys.lock"
FILE_MODE = 0o600
FORMAT_VERSION = 1
KEY_PREFIX = "inv_"
KEY_ID_HEX_DIGITS = 12
SECRET_BYTES = 32
SALT_BYTES = 16
KEYS_MAX = 10_000
PRESENTED_CHARS_MIN = 20
PRESENTED_CHARS_MAX = 255
RELOAD_INTERVAL_SECONDS = 1.0


class Role(IntEnum):
    """What a key may do; each role includes the ones below it."""

    READER = 1
    WRITER = 2
    ADMIN = 3

    def allows(self, required: "Role") -> bool:
        return self >= required

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, label: str) -> "Role":
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown role {label!r}: one of reader, writer, admin") from None


@dataclass(frozen=True)
class KeyRecord:
    """One stored key. Holds no secret; its salt and hash stay out of repr too."""

    key_id: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None = None
    salt: bytes = field(default=b"", repr=False)
    secret_hash: bytes = field(default=b"", repr=False)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(_hash_secret(self.salt, secret), self.secret_hash)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.key_id,
            "role": self.role.label,
            "created_at": _format_time(self.created_at),
            "revoked_at": None if self.revoked_at is None else _format_time(self.revoked_at),
            "salt": self.salt.hex(),
            "hash": self.secret_hash.hex(),
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> "KeyRecord":
        revoked = item["revoked_at"]
        record = cls(
            key_id=str(item["id"]),
            role=Role.parse(str(item["role"])),
            created_at=datetime.fromisoformat(item["created_at"]),
            revoked_at=None if revoked is None else datetime.fromisoformat(revoked),
            salt=bytes.fromhex(item["salt"]),
            secret_hash=bytes.fromhex(item["hash"]),
        )
        if (
            len(record.salt) != SALT_BYTES
            or len(record.secret_hash) != hashlib.sha256().digest_size
        ):
            raise ValueError(f"key {record.key_id}: salt or hash has the wrong length")
        return record


def _hash_secret(salt: bytes, secret: str) -> bytes:
    # One HMAC, not a slow KDF: the secrets are 256 random bits, so a slow hash would protect
    # nothing and cost every request (docs/http.md, "API keys").
    return hmac.new(salt, secret.encode("ascii"), hashlib.sha256).digest()


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _new_record(key_id: str, role: Role, secret: str, now: datetime) -> KeyRecord:
    salt = secrets.token_bytes(SALT_BYTES)
    return KeyRecord(key_id, role, now, None, salt, _hash_secret(salt, secret))


def derived_key_id(presented: str) -> str:
    """The id of an operator-supplied key, which carries none of its own."""
    digest = hashlib.sha256(b"inventory-api-key-id\x00" + presented.encode("ascii"))
    return digest.hexdigest()[:KEY_ID_HEX_DIGITS]


def check_operator_key(presented: str) -> None:
    """An operator-supplied key: 20 to 255 visible ASCII characters. Spaces are refused too:
    they cannot travel in an `Authorization: Bearer` header."""
    if not PRESENTED_CHARS_MIN <= len(presented) <= PRESENTED_CHARS_MAX:
        raise ValueError(
            f"an API key has {PRESENTED_CHARS_MIN} to {PRESENTED_CHARS_MAX} characters, "
            f"not {len(presented)}"
        )
    if not all("!" <= char <= "~" for char in presented):
        raise ValueError("an API key has only visible ASCII characters (no spaces)")


def bearer_key(authorization: str | None) -> str | None:
    """The API key an `Authorization` header presents, or None: `Bearer <key>`, the scheme in
    any case and one or more spaces before the key (RFC 9110, 11.4). The only reading of the
    header: the admission gate and the routes must charge and authenticate the same key."""
    if authorization is None:
        return None
    scheme, _, presented = authorization.strip(" \t").partition(" ")
    presented = presented.lstrip(" ")
    if scheme.lower() != "bearer" or not presented or " " in presented:
        return None
    return presented


def _split_key(presented: str) -> tuple[str, str] | None:
    """(key id, secret) of a key in the generated form, else None."""
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, _, secret = presented[len(KEY_PREFIX) :].partition("_")
    if len(key_id) != KEY_ID_HEX_DIGITS or not secret:
        return None
    if any(char not in "0123456789abcdef" for char in key_id):
        return None
    return key_id, secret


class KeyStore:
    """The keys of one data directory. Safe to share between threads; several processes may
    open the same directory (changes are serialized by a lock file)."""

    def __init__(
        self,
        data_dir: Path,
        wall_clock: Callable[[], float] = time.time,
        monotonic_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = data_dir / STORE_FILE
        self._wall_clock = wall_clock
        self._monotonic_clock = monotonic_clock
        self._mutex = threading.Lock()
        # Replaced whole, never changed in place: readers take the reference without a lock.
        self._records: dict[str, KeyRecord] = {}
        self._file_identity: tuple[int, int, int, int] | None = None
        self._checked_at_s = float("-inf")

    @classmethod
    def open(
        cls,
        data_dir: Path | str,
        wall_clock: Callable[[], float] = time.time,
        monotonic_clock: Callable[[], float] = time.monotonic,
    ) -> Self:
        """The store of `data_dir`; empty (and no file written) if it has no keys yet."""
        store = cls(Path(data_dir), wall_clock, monotonic_clock)
        with store._mutex:
            store._load()
        store._checked_at_s = monotonic_clock()
        return store

    def exists(self) -> bool:
        return self.path.exists()

    def list(self) -> list[KeyRecord]:
        return sorted(self._records.values(), key=lambda record: (record.created_at, record.key_id))

    def get(self, key_id: str) -> KeyRecord | None:
        return self._records.get(key_id)

    def create(self, role: Role) -> tuple[KeyRecord, str]:
        """A new key; returns its record and the full key, which is never available again."""
        with self._changing() as records:
            record, presented = self._generate(role, records)
            records[record.key_id] = record
        return record, presented

    def initialize(self, operator_key: str | None = None) -> tuple[KeyRecord, str] | None:
        """Only while the store has no file yet: add the first admin key, `operator_key` or a
        new one, and return its record and full key. None if the file existed (no change)."""
        with self._changing() as records:
            if self._file_identity is not None:
                return None
            if operator_key is None:
                record, presented = self._generate(Role.ADMIN, records)
            else:
                check_operator_key(operator_key)
                key_id = derived_key_id(operator_key)
                record = _new_record(key_id, Role.ADMIN, operator_key, self._now())
                presented = operator_key
            records[record.key_id] = record
        return record, presented

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; False if there is no such key. Revoking twice keeps the first time."""
        with self._changing() as records:
            record = records.get(key_id)
            if record is not None and record.active:
                records[key_id] = replace(record, revoked_at=self._now())
        return record is not None

    def authenticate(self, presented: str) -> KeyRecord | None:
        """The active key `presented` names, else None (unknown, malformed or revoked). A key
        unknown here is looked for again in the file if another process changed it, so a key
        works the moment `inventory keys create` returns; a revocation is seen within
        `RELOAD_INTERVAL_SECONDS`."""
        now_s = self._monotonic_clock()
        if now_s - self._checked_at_s >= RELOAD_INTERVAL_SECONDS:
            self.reload_if_changed()
        if not (PRESENTED_CHARS_MIN <= len(presented) <= PRESENTED_CHARS_MAX):
            return None
        if not presented.isascii():
            return None
        found = self._find(presented)
        if found is None and self.reload_if_changed():
            found = self._find(presented)
        return found

    def _find(self, presented: str) -> KeyRecord | None:
        records = self._records
        split = _split_key(presented)
        record: KeyRecord | None
        if split is not None and split[0] in records:
            record, secret = records[split[0]], split[1]
        else:
            # An operator-supplied key, whose id is derived from the whole key.
            record, secret = records.get(derived_key_id(presented)), presented
        if record is None or not record.active or not record.matches(secret):
            return None
        return record

    def reload_if_changed(self) -> bool:
        """Read the file again if another process replaced it; True if it did. One `stat`."""
        self._checked_at_s = self._monotonic_clock()
        if _identity(self.path) == self._file_identity:
            return False
        with self._mutex:
            try:
                self._load()
            except (OSError, ValueError, KeyError, TypeError) as error:
                # Keep serving the last good keys; the writer replaces the file atomically, so
                # this means someone edited it by hand. Warn once per version of the file.
                self._file_identity = _identity(self.path)
                log.warning(
                    "api keys: cannot read %s, keeping the last good keys: %s", self.path, error
                )
                return False
        return True

    def _generate(self, role: Role, records: dict[str, KeyRecord]) -> tuple[KeyRecord, str]:
        key_id = secrets.token_hex(KEY_ID_HEX_DIGITS // 2)
        while key_id in records:
            key_id = secrets.token_hex(KEY_ID_HEX_DIGITS // 2)
        secret = secrets.token_urlsafe(SECRET_BYTES)
        record = _new_record(key_id, role, secret, self._now())
        return record, f"{KEY_PREFIX}{key_id}_{secret}"

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall_clock(), UTC)

    def _load(self) -> None:
        identity = _identity(self.path)
        if identity is None:
            records: dict[str, KeyRecord] = {}
        else:
            records = _parse(self.path.read_text(encoding="utf-8"))
        self._records, self._file_identity = records, identity

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, KeyRecord]]:
        """Read the newest file, let the caller change a copy, write it: all under the lock
        file, so concurrent CLI calls and servers never lose each other's changes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._mutex, _file_lock(self.path.parent / LOCK_FILE):
            self._load()
            records = dict(self._records)
            yield records
            if len(records) > KEYS_MAX:
                raise ValueError(f"a store holds at most {KEYS_MAX} keys; delete revoked ones")
            if records != self._records:
                _write_atomically(self.path, _render(records))
                self._load()


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    """What changes whenever the file is replaced (a new inode may reuse the old number)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_ctime_ns, status.st_size


def _parse(text: str) -> dict[str, KeyRecord]:
    document = json.loads(text)
    if document.get("version") != FORMAT_VERSION:
        raise ValueError(f"api key file version {document.get('version')!r} is not supported")
    records: dict[str, KeyRecord] = {}
    for item in document["keys"]:
        record = KeyRecord.from_json(item)
        if record.key_id in records:
            raise ValueError(f"api key file names key {record.key_id} twice")
        records[record.key_id] = record
    return records


def _render(records: dict[str, KeyRecord]) -> str:
    items = [record.to_json() for record in records.values()]
    return json.dumps({"version": FORMAT_VERSION, "keys": items}, indent=2) + "\n"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _write_atomically(path: Path, text: str) -> None:
    """Temp file (mode 0600 from the start) + fsync + rename + fsync of the directory."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(descriptor, FILE_MODE)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def bootstrap_admin(data_dir: Path | str, env_key: str | None) -> KeyRecord | None:
    """Store `env_key` (the value of INVENTORY_ADMIN_KEY) as an admin key, only while the data
    directory has no key store yet. Returns the new record, or None if nothing was stored."""
    if env_key is None:
        return None
    check_operator_key(env_key)
    store = KeyStore.open(data_dir)
    created = store.initialize(env_key)
    if created is None:
        if store.authenticate(env_key) is None:
            log.warning("INVENTORY_ADMIN_KEY ignored: %s existed already", store.path)
        return None
    return created[0]


def create_first_admin(data_dir: Path | str) -> str | None:
    """The full key of a new admin key if the data directory had no key store yet, else None.
    `inventory up` prints it once; call `bootstrap_admin` first so INVENTORY_ADMIN_KEY wins."""
    created = KeyStore.open(data_dir).initialize()
    return None if created is None else created[1]
