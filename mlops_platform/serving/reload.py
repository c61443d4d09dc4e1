"""Which model is served now, and following a registry alias so a promotion reaches the server.

The served model is one reference in `ModelHolder`; a request reads it once and finishes with that
model, so swapping the reference never breaks a request in flight. `AliasFollower` checks the alias
every `interval` seconds; when it points at another version it loads and self-checks that version in a
worker thread (requests keep being answered by the old one meanwhile), then swaps it in. A load that
fails leaves nothing behind (the loader removes its download folder) and the next tries come after
twice the previous wait each time (up to `MAX_BACKOFF_S`), so a broken version is not downloaded
again every interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from mlops_platform.serving.predictors import ModelIdentity, ServedModel, parse_registry_uri, resolve_identity

logger = logging.getLogger(__name__)
# An old model's torch batcher may still be finishing a batch; close it only after this long.
_RETIRE_DELAY_S = 30.0
MAX_BACKOFF_S = 300.0


class ModelHolder:
    """The model being served; replaced whole, never mutated."""

    def __init__(self, model: ServedModel):
        self.current = model
        self.swaps = 0

    def swap(self, model: ServedModel) -> ServedModel:
        old, self.current = self.current, model
        self.swaps += 1
        return old


class AliasFollower:
    """Polls `models:/name@alias` and swaps in the version it points at."""

    def __init__(
        self,
        holder: ModelHolder,
        tracking_uri: str,
        interval: float,
        load: Callable[[ModelIdentity], ServedModel],
    ):
        self.holder = holder
        self.tracking_uri = tracking_uri
        self.interval = interval
        self._load = load
        self._task: asyncio.Task | None = None
        self.failures = 0  # consecutive failed checks or loads
        self.last_error: str | None = None

    @property
    def next_wait(self) -> float:
        """Seconds until the next check: the interval, doubled for each consecutive failure."""
        if not self.failures:
            return self.interval
        return min(self.interval * 2**self.failures, max(MAX_BACKOFF_S, self.interval))

    def status(self) -> dict:
        return {
            "alias": self.holder.current.identity.model_uri,
            "failures": self.failures,
            "last_error": self.last_error,
            "next_check_s": round(self.next_wait, 3),
        }

    @staticmethod
    def applies_to(model_uri: str) -> bool:
        return parse_registry_uri(model_uri)[2] is not None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check_once(self) -> bool:
        """Swap in the alias's current version if it moved; True when a new model was swapped in."""
        served = self.holder.current.identity
        identity = await asyncio.to_thread(resolve_identity, served.model_uri, self.tracking_uri)
        if identity.version == served.version:
            return False
        logger.info(
            "alias %s moved: version %s -> %s; loading", served.model_uri, served.version, identity.version
        )
        model = await asyncio.to_thread(self._load, identity)
        old = self.holder.swap(model)
        logger.info("now serving %s version %s", identity.name, identity.version)
        asyncio.get_running_loop().call_later(_RETIRE_DELAY_S, old.close)
        return True

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.next_wait)
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a registry hiccup or a bad version must not stop serving
                self.failures += 1
                self.last_error = str(error)[:500]
                logger.warning(
                    "alias check failed (%d in a row; next try in %.1f s), still serving version %s: %s",
                    self.failures,
                    self.next_wait,
                    self.holder.current.identity.version,
                    error,
                )
            else:
                self.failures, self.last_error = 0, None


class ModelSlot:
    """One served model URI: the model loaded now and, for an alias, the follower that moves it."""

    def __init__(self, holder: ModelHolder, follower: AliasFollower | None):
        self.holder = holder
        self.follower = follower

    @classmethod
    def open(
        cls, model_uri: str, tracking_uri: str, reload_interval: float, load: Callable[..., ServedModel]
    ) -> ModelSlot:
        """Load `model_uri` now; follow its alias every `reload_interval` seconds when it names one."""
        holder = ModelHolder(load(model_uri))
        follower = None
        if reload_interval > 0 and AliasFollower.applies_to(model_uri):
            follower = AliasFollower(
                holder, tracking_uri, reload_interval, lambda identity: load(model_uri, identity)
            )
        return cls(holder, follower)

    @property
    def current(self) -> ServedModel:
        return self.holder.current

    def start(self) -> None:
        if self.follower is not None:
            self.follower.start()

    async def stop(self) -> None:
        if self.follower is not None:
            await self.follower.stop()
        self.holder.current.close()
