"""One-line explanations of what goes wrong between rest_hf and the Hub.

huggingface_hub raises long chains of HTTP and cache errors; users need one line that says what was looked for,
why it failed and what to do. `HubError` is a `ValueError`, so callers that already treat bad input as
`ValueError` keep working; the command line prints it as one line and exits non-zero.
"""

from __future__ import annotations

from huggingface_hub import constants, get_token
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    HTTPError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)


class HubError(ValueError):
    """A Hub operation failed for a reason the user can fix; the message is one line."""


def offline() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set."""
    return constants.is_offline_mode()


def require_online(action: str) -> None:
    """Refuse an upload in offline mode before anything is read or sent."""
    if offline():
        raise HubError(f"cannot {action}: HF_HUB_OFFLINE=1 is set; unset it to reach the Hub")


def require_token(token: str | None, action: str) -> str:
    """The token to write with: the one given, else HF_TOKEN or the one saved by `hf auth login`."""
    token = token or get_token()
    if not token:
        raise HubError(
            f"cannot {action}: no Hugging Face token; run `hf auth login` or set HF_TOKEN to a token with write access"
        )
    return token


def explain(
    error: Exception, *, action: str, repo_id: str, repo_type: str = "model", revision: str | None = None
) -> HubError:
    """Turn an error raised by huggingface_hub while doing `action` on `repo_id` into a one-line `HubError`."""
    kind = repo_type if repo_type in ("dataset", "space") else "model"
    where = f"{kind} {repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    if isinstance(error, RevisionNotFoundError):
        hint = (
            f"{kind} {repo_id!r} has no revision {revision!r}; check --revision (a branch, tag or commit id)"
        )
    elif isinstance(error, GatedRepoError):
        hint = f"{where} is gated; accept its conditions on the Hub page, then log in with `hf auth login`"
    elif isinstance(error, RepositoryNotFoundError):
        hint = (
            f"there is no {kind} repository {repo_id!r} on the Hub (or it is private and your token cannot see it: "
            "`hf auth login`)"
        )
    elif isinstance(error, HFValidationError):
        hint = f"{repo_id!r} is not a valid Hub repository id; use the form org/name"
    elif isinstance(error, IncompleteSnapshotError):
        hint = f"the cached copy of {where} is incomplete and the Hub cannot be reached; download it again online"
    elif isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled)) and offline():
        hint = (
            f"{where} is not in the local Hub cache and HF_HUB_OFFLINE=1 is set; download it once online, "
            "or pass --cache-dir pointing at a cache that holds it"
        )
    elif isinstance(error, LocalEntryNotFoundError):
        hint = (
            f"the Hub cannot be reached and {where} is not in the local cache; check the network "
            "(or HF_ENDPOINT), or set HF_HUB_OFFLINE=1 to use only the cache"
        )
    elif isinstance(error, HfHubHTTPError) and getattr(error.response, "status_code", None) in (401, 403):
        hint = (
            f"the Hub refused the token for {where} (HTTP {error.response.status_code}); use a token with write "
            "access to that namespace (`hf auth login`)"
        )
    elif isinstance(error, HfHubHTTPError):
        status = getattr(error.response, "status_code", "?")
        hint = f"the Hub answered HTTP {status} for {where}: {_first_line(error)}"
    elif isinstance(
        error, (HTTPError, ConnectionError, OSError, TimeoutError)
    ):  # HTTPError: httpx's transport errors
        hint = f"the Hub cannot be reached ({type(error).__name__}: {_first_line(error)}); check the network or HF_ENDPOINT"
    else:
        hint = f"{type(error).__name__}: {_first_line(error)}"
    return HubError(f"cannot {action}: {hint}")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no details"


__all__ = ["HubError", "explain", "offline", "require_online", "require_token"]
