"""Python client of the hm2bp training service; depends on httpx and httpx-sse only.

    from hm2bp_client import Client
    with Client() as hm2bp:                      # HM2BP_URL / HM2BP_TOKEN or ~/.config/hm2bp/config.toml
        job = hm2bp.submit(spec, "builtin:digits")
        done = hm2bp.wait(job["id"])             # follows the event stream to the final state
        hm2bp.download(job["id"], "runs/" + job["id"])
"""

from .client import TERMINAL_STATES, Client, is_final
from .errors import APIError, ConfigError, HM2BPError, ServiceUnreachable, StreamUnavailable, WaitTimeout

__all__ = ["APIError", "Client", "ConfigError", "HM2BPError", "ServiceUnreachable", "StreamUnavailable",
           "TERMINAL_STATES", "WaitTimeout", "is_final"]
