"""Service settings, read from ``HM2BP_*`` environment variables (pydantic-settings).

Every default serves the embedded mode of ``hm2bp serve``: everything lives under ``data_dir``
(SQLite file, artifact folder, upload staging), and Redis is the one of ``redis_url``.
"""

from __future__ import annotations

import base64
import binascii
import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HM2BP_", extra="ignore")

    data_dir: Path = Field(Path(".hm2bp"), description="root of the SQLite file, artifacts and upload staging")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file DATA_DIR/hm2bp.db")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="broker and event streams; redis://HOST:PORT/DB or redis+socket:///PATH (hm2bp serve "
        "starts an embedded Redis when this is unset)",
    )
    redis_prefix: str = Field("hm2bp:", description="prefix of the event stream keys")
    artifacts_url: str | None = Field(None, description="fsspec URL of the artifact root; default: DATA_DIR/artifacts")
    max_upload_bytes: int = Field(2 << 30, gt=0, description="largest dataset upload (413 beyond)")
    upload_readers: int = Field(1, ge=1, description="uploads that each API process reads and checks at once (each "
                                "holds its dataset in memory meanwhile; the others wait, received on disk): "
                                "bounds the API's memory under many large uploads")
    max_uncompressed_bytes: int = Field(8 << 30, gt=0, description="largest total size of an archive's members")
    max_archive_members: int = Field(100_000, gt=0, description="most members an uploaded archive may hold")
    max_classes: int = Field(10_000, gt=1, description="most classes an uploaded dataset may have (422 beyond)")
    max_compression_ratio: float = Field(200.0, gt=1, description="largest size/compressed ratio of a member")
    lease_seconds: float = Field(30.0, gt=0, description="a running job's lease; renewed every lease_seconds/6")
    max_attempts: int = Field(3, ge=1, description="deliveries of one job before a platform fault fails it")
    sweep_seconds: float = Field(5.0, gt=0, description="how often a worker re-queues jobs with expired leases")
    redispatch_seconds: float = Field(60.0, gt=0, description="a job sent to the broker but not taken this long "
                                      "while a worker of its queue is idle is sent again (the message was lost)")
    cancel_grace_seconds: float = Field(2.0, ge=0, description="time between the cancel flag and SIGTERM/SIGKILL")
    max_job_seconds: int = Field(7 * 24 * 3600, gt=0, description="longest job; sets the broker visibility timeout")
    stream_maxlen: int = Field(10_000, gt=0, description="approximate cap on each job's Redis Stream")
    worker_queues: str = Field("gpu,cpu", description="queues the worker consumes, comma separated")
    cors_origins: str = Field(
        "", description="comma-separated origins (https://lab.example.org) whose pages may call the API and open "
        "its streams; empty: none but the API's own (CORS closed)")
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="the whole of one webhook attempt (lookup, "
                                           "connect, request, reply), however slowly the receiver answers")
    webhook_claim_margin_seconds: float = Field(30.0, gt=0, description="a worker's claim on a webhook attempt "
                                                "lasts its deadline plus this: no other worker sends it meanwhile")
    webhook_max_reply_bytes: int = Field(65_536, ge=0, description="most bytes of a receiver's reply read (the rest "
                                         "is not read; only the status counts)")
    webhook_concurrency: int = Field(32, ge=1, description="webhook attempts in flight at once in each worker")
    webhook_receiver_concurrency: int = Field(2, ge=1, description="of those, at most this many to one receiver "
                                              "(scheme, host and port), so a slow receiver delays only itself")
    webhook_allowed_destinations: str = Field(
        "", description="comma-separated networks (10.20.0.0/16, ::1) and host names that webhooks may reach although "
        "they are not public addresses; empty: public addresses only (loopback, private, link-local, metadata... "
        "are refused)")
    webhook_secrets_key: SecretStr | None = Field(
        None, description="Fernet key(s) that encrypt the webhook signing secrets in the database, comma separated "
        "(the first encrypts, all decrypt: rotation); default: the file DATA_DIR/webhook-secrets.key, made on first "
        "use. Set it where the API and the workers do not share DATA_DIR")
    webhook_backoff_seconds: float = Field(10.0, gt=0, description="wait before a failed webhook's first retry; "
                                           "doubled after each further failure (at most an hour)")
    webhook_max_attempts: int = Field(8, ge=1, description="attempts of one webhook delivery before it is given up")
    webhook_poll_seconds: float = Field(1.0, gt=0, description="how often each worker looks for due webhooks")
    builtin_download_limit_bytes: int = Field(
        100 << 20, ge=0, description="a built-in dataset absent from DATA_DIR/builtin is downloaded by the first job "
        "that uses it when its download is at most this size (MNIST: 12 MB); larger ones (EMNIST, N-MNIST) must be "
        "put in place first, and jobs on them are refused at submit until they are")
    max_sweep_points: int = Field(100, ge=1, description="most jobs one sweep may create (422 beyond)")
    worker_heartbeat_seconds: float = Field(10.0, gt=0, description="how often a worker renews its entry in "
                                            "GET /v1/workers; it drops out after three missed beats")
    job_memory_mib: int = Field(0, ge=0, description="memory limit of each training child (MiB; RLIMIT_DATA), "
                                "advertised in GET /v1/capabilities and checked at submit; 0: 80 % of the worker's "
                                "physical memory, or of its container's (cgroup) limit when that is lower")
    max_sample_steps: int = Field(200_000_000_000, gt=0, description="most work one job may ask for: epochs x "
                                  "(train + test samples) x time steps (422 beyond; the paper's MNIST run is 5.6e9)")
    max_queued_jobs: int = Field(100, ge=1, description="queued jobs one user may have at once (429 beyond)")
    max_running_jobs: int = Field(4, ge=1, description="jobs of one user that run at once; the others wait, and "
                                  "workers take the other users' jobs first")
    max_stored_bytes: int = Field(10 << 30, gt=0, description="total size of one user's uploaded datasets "
                                  "(422 beyond)")
    quota_retry_seconds: int = Field(60, ge=1, description="the Retry-After of a 429 for a full queue")
    raster_samples: int = Field(8, ge=0, le=64, description="test samples whose spike trains a finished job saves "
                                "(rasters.json, for the dashboard's raster plot); 0: none")

    @field_validator("webhook_secrets_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        """Each key is 32 bytes in URL-safe base64 (``Fernet.generate_key()``), or the service refuses to start."""
        if value is None:
            return None
        keys = [key.strip() for key in value.get_secret_value().split(",") if key.strip()]
        for number, key in enumerate(keys, start=1):
            try:
                valid = len(base64.urlsafe_b64decode(key.encode())) == 32
            except (binascii.Error, ValueError):
                valid = False
            if not valid:
                raise ValueError(f"key {number} is not a Fernet key (32 bytes in URL-safe base64)")
        if not keys:
            raise ValueError("no key given")
        return value

    @property
    def job_memory_bytes(self) -> int:
        """The memory limit of each training child on this machine (``job_memory_mib``)."""
        if self.job_memory_mib:
            return self.job_memory_mib << 20
        from .memory import cgroup_limit

        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return int(0.8 * min(physical, cgroup_limit() or physical))
    max_body_bytes: int = Field(1 << 20, gt=0, description="largest request body of every route but dataset uploads "
                                "(those have max_upload_bytes); a larger one is a 413 before it is parsed or "
                                "its token checked")
    header_timeout_seconds: float = Field(10.0, gt=0, description="a connection must send a request's headers within "
                                          "this time from its first byte (or from connecting); else it is closed")
    body_timeout_seconds: float = Field(30.0, gt=0, description="a request body may take this long to arrive; "
                                        "beyond it, only while it keeps min_body_bytes_per_second on average (408)")
    min_body_bytes_per_second: int = Field(64 << 10, gt=0, description="slowest average rate of a long body, "
                                           "a dataset upload (408 below it, after body_timeout_seconds)")
    keep_alive_seconds: int = Field(5, gt=0, description="an idle keep-alive connection is closed after this time")
    admin_users: str = Field("", description="comma-separated user names that see every worker's host, pid and "
                             "CPU model in GET /v1/workers and the job counts in GET /metrics (hm2bp serve adds "
                             "the user who runs it)")
    api_docs_assets: Path | None = Field(None, description="a folder with swagger-ui-bundle.js and swagger-ui.css "
                                         "(e.g. from the swagger-ui-dist npm package) to serve /docs from; unset: "
                                         "no /docs (the OpenAPI document stays at /openapi.json)")

    @property
    def allowed_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def webhook_claim_seconds(self) -> float:
        """How long a claimed webhook attempt is held: longer than the attempt may take."""
        return self.webhook_timeout_seconds + self.webhook_claim_margin_seconds

    @property
    def webhook_secrets_key_file(self) -> Path:
        return self.data_dir / "webhook-secrets.key"

    @property
    def sqlite_file(self) -> Path:
        """The embedded mode's database file (used when no database_url is set)."""
        return self.data_dir / "hm2bp.db"

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(name.strip() for name in self.admin_users.split(",") if name.strip())

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_file.resolve()}"

    @property
    def artifacts_root(self) -> str:
        return self.artifacts_url or str((self.data_dir / "artifacts").resolve())

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"

    @property
    def builtin_data_dir(self) -> Path:
        return self.data_dir / "builtin"

    @property
    def work_dir(self) -> Path:
        """Local scratch for runs when the artifact store is remote."""
        return self.data_dir / "work"

    @property
    def celery_broker_url(self) -> str:
        return self.redis_url

    @property
    def redis_client_url(self) -> str:
        """The URL for redis-py, which spells a unix socket ``unix://`` where kombu says ``redis+socket://``."""
        if self.redis_url.startswith("redis+socket://"):
            return "unix://" + self.redis_url[len("redis+socket://"):]
        return self.redis_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (environment read once)."""
    return Settings()
