"""Python client of the hm2bp training service; depends on httpx, httpx-sse and the job states
(``hm2bp_service.states``, which imports nothing else).

    from hm2bp_client import Client
    with Client() as hm2bp:                      # HM2BP_URL / HM2BP_TOKEN or ~/.config/hm2bp/config.toml
        job = hm2bp.submit(spec, "builtin:digits")
        done = hm2bp.wait(job["id"])             # follows the event stream to the final state
        hm2bp.download(job["id"], "runs/" + job["id"])
        mine = hm2bp.jobs(state="failed")           # newest first; hm2bp.resume(mine[0]["id"]) requeues one
        epochs = hm2bp.metrics(job["id"])["epochs"] # per-epoch rows, state transitions, the paper's curves
        sweep = hm2bp.wait_sweep(hm2bp.submit_sweep(spec, "builtin:digits", {"training.lr": [1e-3, 5e-4]})["id"])

A webhook receiver checks each delivery with ``verify_webhook(secret, headers, body)``.
"""

from .client import TERMINAL_STATES, Client, is_final
from .errors import APIError, ConfigError, HM2BPError, ServiceUnreachable, StreamUnavailable, WaitTimeout
from .webhooks import WebhookVerificationError, sign_webhook, verify_webhook

__all__ = ["APIError", "Client", "ConfigError", "HM2BPError", "ServiceUnreachable", "StreamUnavailable",
           "TERMINAL_STATES", "WaitTimeout", "WebhookVerificationError", "is_final", "sign_webhook", "verify_webhook"]
