"""The API-key store: roles, create/authenticate/revoke, the file, reloads and bootstrap."""

import logging
import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serve_app.keys import (
    KEY_PREFIX,
    STORE_FILE,
    KeyStore,
    Role,
    bootstrap_admin,
    create_first_admin,
    derived_key_id,
)

OPERATOR_KEY = "operator-chosen-Random-Key-0123456789"


class FakeClock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def store_with_clock(data_dir: Path, clock: FakeClock) -> KeyStore:
    return KeyStore.open(data_dir, wall_clock=clock, monotonic_clock=clock)


@given(st.sampled_from(Role), st.sampled_from(Role))
def test_a_role_allows_exactly_itself_and_the_roles_below(have: Role, required: Role) -> None:
    order = [Role.READER, Role.WRITER, Role.ADMIN]
    assert have.allows(required) == (order.index(have) >= order.index(required))


def test_roles_parse_from_their_labels() -> None:
    assert [Role.parse(role.label) for role in Role] == [Role.READER, Role.WRITER, Role.ADMIN]
    with pytest.raises(ValueError, match="unknown role"):
        Role.parse("root")


def test_a_created_key_authenticates_with_its_role(data_dir: Path) -> None:
    store = KeyStore.open(data_dir)
    record, presented = store.create(Role.WRITER)
    assert presented.startswith(f"{KEY_PREFIX}{record.key_id}_")
    assert store.authenticate(presented) == record
    assert record.role is Role.WRITER and record.active


def test_created_keys_have_a_short_public_id_and_a_long_secret(data_dir: Path) -> None:
    store = KeyStore.open(data_dir)
    record, presented = store.create(Role.READER)
    secret = presented.removeprefix(f"{KEY_PREFIX}{record.key_id}_")
    assert len(record.key_id) == 12
    assert len(secret) >= 43  # token_urlsafe(32): 256 bits, base64


def test_created_at_comes_from_the_injected_clock(data_dir: Path) -> None:
    store = store_with_clock(data_dir, FakeClock(1_700_000_000.0))
    record, _ = store.create(Role.ADMIN)
    assert record.created_at == datetime.fromtimestamp(1_700_000_000.0, UTC)


def test_a_wrong_secret_for_a_known_id_is_refused(data_dir: Path) -> None:
    store = KeyStore.open(data_dir)
    _, presented = store.create(Role.READER)
    tampered = presented[:-1] + ("A" if presented[-1] != "A" else "B")
    assert store.authenticate(tampered) is None


def test_an_unknown_key_is_refused(data_dir: Path) -> None:
    store = KeyStore.open(data_dir)
    store.create(Role.READER)
    other_store = KeyStore.open(data_dir.parent / "other")
    _, foreign = other_store.create(Role.READER)
    assert store.authenticate(foreign) is None


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "inv_",
        "inv__",
        "inv_0123456789ab_",
        "inv_XYZ_abcdefghijklmnopqrstuvwxyz",
        "Bearer inv_0123456789ab_abcdefghijklmnopqrstuvwxyz",
        "x" * 256,
        "ünïcödé-ünïcödé-ünïcödé",
    ],
)
def test_malformed_keys_are_refused(data_dir: Path, presented: str) -> None:
    store = KeyStore.open(data_dir)
    store.create(Role.ADMIN)
    assert store.authenticate(presented) is None


@given(st.text(max_size=300))
def test_authenticate_never_raises_on_any_text(presented: str) -> None:
    store = KeyStore(Path("does-not-exist"))
    assert store.authenticate(presented) is None


def test_a_revoked_key_is_refused(data_dir: Path) -> None:
    store = KeyStore.open(data_dir)
    record, presented = store.create(Role.ADMIN)
    assert store.revoke(record.key_id)
    assert store.authenticate(presented) is None
    revoked = store.get(record.key_id)
    assert revoked is not None and revoked.revoked_at is not None and not revoked.active


def test_revoking_twice_keeps_the_first_time_and_unknown_ids_are_reported(
    data_dir: Path,
) -> None:
    clock = FakeClock(1_000.0)
    store = store_with_clock(data_dir, clock)
    record, _ = store.create(Role.READER)
    clock.now_s = 2_000.0
    assert store.revoke(record.key_id)
    clock.now_s = 3_000.0
    assert store.revoke(record.key_id)
    assert store.get(record.key_id) == store.list()[0]
    assert store.list()[0].revoked_at == datetime.fromtimestamp(2_000.0, UTC)
    assert not store.revoke("000000000000")


def test_revoking_one_key_leaves_the_others(data_dir: Path) -> None:
    store = KeyStore.open(data_dir)
    first, first_key = store.create(Role.READER)
    second, second_key = store.create(Role.WRITER)
    store.revoke(first.key_id)
    assert store.authenticate(first_key) is None
    assert store.authenticate(second_key) == second


def test_list_returns_every_key_oldest_first(data_dir: Path) -> None:
    clock = FakeClock(1_000.0)
    store = store_with_clock(data_dir, clock)
    made = []
    for role in (Role.ADMIN, Role.READER, Role.WRITER):
        made.append(store.create(role)[0])
        clock.now_s += 1
    assert store.list() == made


def test_secrets_are_never_in_the_file_nor_in_repr_or_str(data_dir: Path) -> None:
    store = KeyStore.open(data_dir)
    record, presented = store.create(Role.ADMIN)
    secret = presented.split("_", 2)[2]
    text = (data_dir / STORE_FILE).read_text()
    assert secret not in text and presented not in text
    for shown in (repr(record), str(record), repr(store.list())):
        assert secret not in shown
        assert record.salt.hex() not in shown and record.secret_hash.hex() not in shown


def test_the_key_file_is_private_and_no_temporary_file_is_left(data_dir: Path) -> None:
    store = KeyStore.open(data_dir)
    record, _ = store.create(Role.READER)
    store.revoke(record.key_id)
    mode = stat.S_IMODE((data_dir / STORE_FILE).stat().st_mode)
    assert mode == 0o600
    assert not [path for path in data_dir.iterdir() if path.name.endswith(".tmp")]


def test_the_key_file_stays_private_under_a_permissive_umask(data_dir: Path) -> None:
    previous = os.umask(0)
    try:
        KeyStore.open(data_dir).create(Role.READER)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((data_dir / STORE_FILE).stat().st_mode) == 0o600


def test_opening_a_directory_without_keys_writes_nothing(data_dir: Path) -> None:
    store = KeyStore.open(data_dir)
    assert store.list() == [] and not store.exists()
    assert not data_dir.exists()


def test_a_store_reopened_from_disk_authenticates(data_dir: Path) -> None:
    record, presented = KeyStore.open(data_dir).create(Role.WRITER)
    reopened = KeyStore.open(data_dir)
    assert reopened.authenticate(presented) == record


def test_a_key_created_by_another_store_works_at_once(data_dir: Path) -> None:
    clock = FakeClock(100.0)
    server = store_with_clock(data_dir, clock)
    assert server.authenticate("inv_0123456789abcdef_unknownsecretunknownsecret") is None
    record, presented = KeyStore.open(data_dir).create(Role.READER)
    # The file was checked a moment ago; an unknown key makes the store look again.
    assert server.authenticate(presented) == record


def test_reload_sees_a_key_revoked_by_another_store(data_dir: Path) -> None:
    clock = FakeClock(100.0)
    record, presented = KeyStore.open(data_dir).create(Role.ADMIN)
    server = store_with_clock(data_dir, clock)
    assert server.authenticate(presented) == record
    assert KeyStore.open(data_dir).revoke(record.key_id)
    assert server.reload_if_changed()
    assert server.authenticate(presented) is None


def test_reload_if_changed_is_false_when_the_file_did_not_change(data_dir: Path) -> None:
    store = KeyStore.open(data_dir)
    store.create(Role.READER)
    assert not store.reload_if_changed()


def test_changes_from_two_stores_are_both_kept(data_dir: Path) -> None:
    first, second = KeyStore.open(data_dir), KeyStore.open(data_dir)
    one, _ = first.create(Role.READER)
    two, _ = second.create(Role.WRITER)  # second had not seen `one`; it must not drop it
    assert {record.key_id for record in KeyStore.open(data_dir).list()} == {
        one.key_id,
        two.key_id,
    }


def test_a_corrupt_file_on_reload_keeps_the_last_good_keys(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = KeyStore.open(data_dir)
    record, presented = store.create(Role.READER)
    (data_dir / STORE_FILE).write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert not store.reload_if_changed()
    assert store.authenticate(presented) == record
    assert "keeping the last good keys" in caplog.text
    assert not store.reload_if_changed()  # the same bad file is not read (nor logged) again
    assert caplog.text.count("keeping the last good keys") == 1


def test_opening_a_corrupt_file_fails_loudly(data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / STORE_FILE).write_text('{"version": 99, "keys": []}')
    with pytest.raises(ValueError, match="version"):
        KeyStore.open(data_dir)


def test_authenticate_is_fast(data_dir: Path) -> None:
    store = KeyStore.open(data_dir)
    _, presented = store.create(Role.READER)
    calls = 2_000
    started = time.perf_counter()
    for _ in range(calls):
        assert store.authenticate(presented) is not None
    per_call_s = (time.perf_counter() - started) / calls
    assert per_call_s < 0.001 / 4


def test_bootstrap_stores_the_env_key_as_admin_on_first_use(data_dir: Path) -> None:
    record = bootstrap_admin(data_dir, OPERATOR_KEY)
    assert record is not None and record.role is Role.ADMIN
    assert record.key_id == derived_key_id(OPERATOR_KEY)
    assert KeyStore.open(data_dir).authenticate(OPERATOR_KEY) == record
    assert OPERATOR_KEY not in (data_dir / STORE_FILE).read_text()


def test_bootstrap_ignores_the_env_key_once_the_store_exists(data_dir: Path) -> None:
    assert bootstrap_admin(data_dir, OPERATOR_KEY) is not None
    assert bootstrap_admin(data_dir, OPERATOR_KEY) is None
    assert bootstrap_admin(data_dir, OPERATOR_KEY + "-other") is None
    store = KeyStore.open(data_dir)
    assert len(store.list()) == 1
    assert store.authenticate(OPERATOR_KEY + "-other") is None


def test_bootstrap_does_nothing_after_the_cli_created_a_key(data_dir: Path) -> None:
    KeyStore.open(data_dir).create(Role.READER)
    assert bootstrap_admin(data_dir, OPERATOR_KEY) is None
    assert KeyStore.open(data_dir).authenticate(OPERATOR_KEY) is None


def test_bootstrap_without_an_env_key_writes_nothing(data_dir: Path) -> None:
    assert bootstrap_admin(data_dir, None) is None
    assert not (data_dir / STORE_FILE).exists()


@pytest.mark.parametrize(
    "env_key", ["too-short", "x" * 256, "has a space in it, twenty+", "ünïcödé-ünïcödé-ünïcödé"]
)
def test_bootstrap_refuses_a_malformed_env_key(data_dir: Path, env_key: str) -> None:
    with pytest.raises(ValueError, match="API key"):
        bootstrap_admin(data_dir, env_key)
    assert not (data_dir / STORE_FILE).exists()


def test_an_env_key_in_the_generated_form_also_works(data_dir: Path) -> None:
    env_key = f"{KEY_PREFIX}0123456789ab_{'s' * 40}"
    record = bootstrap_admin(data_dir, env_key)
    assert record is not None
    assert KeyStore.open(data_dir).authenticate(env_key) == record


def test_the_first_admin_key_is_created_once(data_dir: Path) -> None:
    presented = create_first_admin(data_dir)
    assert presented is not None
    record = KeyStore.open(data_dir).authenticate(presented)
    assert record is not None and record.role is Role.ADMIN
    assert create_first_admin(data_dir) is None
    assert len(KeyStore.open(data_dir).list()) == 1


def test_no_first_admin_key_when_the_env_key_was_bootstrapped(data_dir: Path) -> None:
    bootstrap_admin(data_dir, OPERATOR_KEY)
    assert create_first_admin(data_dir) is None
