"""Webhook signing secrets are not stored in clear (issue 20, item 10): the database holds them
Fernet-encrypted under a key kept outside it (an owner-only file in the data folder, or
HM2BP_WEBHOOK_SECRETS_KEY), and the migration seals the secrets that were stored in clear without
changing them. Fails on main: users.webhook_secret held the secret itself."""

from __future__ import annotations

import sqlite3
import stat

from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from hm2bp_service.sealing import SecretBox, key_file
from hm2bp_service.settings import Settings, get_settings
from hm2bp_service.store import Store, migrate


def test_the_database_never_holds_the_secret(secured):
    alice = secured.service.client("alice")
    secret = alice.get("/v1/webhook-secret").json()["secret"]
    rotated = alice.post("/v1/webhook-secret/rotate").json()["secret"]
    assert rotated != secret and alice.get("/v1/webhook-secret").json()["secret"] == rotated
    database = secured.root / "hm2bp.db"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(FULL)")
        columns = [row[1] for row in connection.execute("PRAGMA table_info(users)")]
        sealed = connection.execute("SELECT webhook_secret_sealed FROM users WHERE name = 'alice'").fetchone()[0]
    assert "webhook_secret" not in columns and sealed.startswith("gAAAA")
    for path in secured.root.glob("hm2bp.db*"):  # the file, its WAL and shared memory
        raw = path.read_bytes()
        assert rotated.encode() not in raw and secret.encode() not in raw
    key = secured.root / "webhook-secrets.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert SecretBox(lambda: [key.read_bytes().strip()]).open(sealed) == rotated


def test_key_file_is_made_once_and_owner_only(tmp_path):
    first = key_file(tmp_path / "data" / "k.key")
    assert key_file(tmp_path / "data" / "k.key") == first and Fernet(first)
    assert stat.S_IMODE((tmp_path / "data" / "k.key").stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["k.key"]


def test_migration_seals_clear_secrets_keeping_them(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    from alembic import command
    from alembic.config import Config

    from hm2bp_service.store.database import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "0004")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO users (id, name, created_at, webhook_secret) "
                                "VALUES (1, 'old', CURRENT_TIMESTAMP, 'whsec_the-old-one')"))
    engine.dispose()
    with sqlite3.connect(tmp_path / "old.db") as connection:  # foreign keys off: a delivery without its job
        for number, (status, error) in enumerate(((500, "HTTP 500: redis_version:7.2.4 ..."),
                                                  (None, "ConnectError: [Errno 111] Connection refused"))):
            connection.execute(
                "INSERT INTO webhook_deliveries (id, job_id, url, event, body, state, attempts, next_attempt_at, "
                "last_status, last_error, created_at) VALUES (?, ?, 'HTTP://Hooks.Example.org/x', "
                "'job.failed', '{}', 'failed', 8, CURRENT_TIMESTAMP, ?, ?, CURRENT_TIMESTAMP)",
                (f"whd_{number}", f"job_{number}", status, error))
    keys = f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}"
    monkeypatch.setenv("HM2BP_WEBHOOK_SECRETS_KEY", keys)
    get_settings.cache_clear()
    try:
        migrate(url)
        box = SecretBox.from_settings(Settings())
        store = Store.from_url(url, box)
        assert store.users.webhook_secret(1) == "whsec_the-old-one"
        with sqlite3.connect(tmp_path / "old.db") as connection:
            columns = [row[1] for row in connection.execute("PRAGMA table_info(users)")]
            sealed = connection.execute("SELECT webhook_secret_sealed FROM users").fetchone()[0]
            scrubbed = connection.execute("SELECT receiver, last_error FROM webhook_deliveries ORDER BY id").fetchall()
        assert "webhook_secret" not in columns and sealed.startswith("gAAAA")
        assert scrubbed == [("http://hooks.example.org:80", "HTTP 500"), ("http://hooks.example.org:80",
                                                                         "connection failed")]
        # rotation of the service key: a box with the second key first still opens it
        rotated = SecretBox(lambda: [k.encode() for k in reversed(keys.split(","))])
        assert rotated.open(sealed) == "whsec_the-old-one"
        store.close()
    finally:
        get_settings.cache_clear()
