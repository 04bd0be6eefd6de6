"""`inventory keys create|list|revoke`, called as `main(argv)` with stdout captured."""

import argparse
from pathlib import Path

import pytest

from inventory_cli.keys import add_keys_parser, main, run_keys
from serve_app.keys import KeyStore, Role


def create_key(data_dir: Path, role: str, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """(key id, full key) as printed by `keys create`."""
    assert main(["keys", "create", "--role", role, "--data-dir", str(data_dir)]) == 0
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines()[:3])
    return lines["id"].strip(), lines["key"].strip()


def test_create_prints_a_key_that_authenticates_with_its_role(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_id, presented = create_key(tmp_path, "writer", capsys)
    record = KeyStore.open(tmp_path).authenticate(presented)
    assert record is not None and record.key_id == key_id and record.role is Role.WRITER


def test_create_refuses_an_unknown_role(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["keys", "create", "--role", "root", "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_list_shows_ids_and_roles_but_never_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reader_id, reader_key = create_key(tmp_path, "reader", capsys)
    admin_id, admin_key = create_key(tmp_path, "admin", capsys)
    assert main(["keys", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split() == ["id", "role", "created", "revoked"]
    assert [row.split()[:2] for row in rows] == [[reader_id, "reader"], [admin_id, "admin"]]
    assert all(row.split()[3] == "-" for row in rows)
    for presented in (reader_key, admin_key):
        assert presented.split("_", 2)[2] not in out


def test_revoke_marks_the_key_revoked_and_it_no_longer_authenticates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_id, presented = create_key(tmp_path, "reader", capsys)
    assert main(["keys", "revoke", key_id, "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"revoked {key_id}"
    assert KeyStore.open(tmp_path).authenticate(presented) is None
    main(["keys", "list", "--data-dir", str(tmp_path)])
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[0] == key_id and row[3].endswith("Z")


def test_revoking_an_unknown_id_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create_key(tmp_path, "reader", capsys)
    assert main(["keys", "revoke", "000000000000", "--data-dir", str(tmp_path)]) == 1
    assert "no key with id" in capsys.readouterr().err


def test_list_of_an_empty_directory_prints_only_the_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "list", "--data-dir", str(tmp_path / "none")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert not (tmp_path / "none").exists()


def test_the_data_dir_defaults_to_data_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["keys", "create", "--role", "admin"]) == 0
    capsys.readouterr()
    assert len(KeyStore.open(tmp_path / "data").list()) == 1


def test_the_keys_parser_plugs_into_another_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="inventory")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("down")
    add_keys_parser(commands)
    args = parser.parse_args(["keys", "list", "--data-dir", str(tmp_path)])
    assert args.handler is run_keys
    assert args.handler(args) == 0
    assert capsys.readouterr().out.startswith("id")
