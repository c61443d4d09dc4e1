"""Which model is served now, and following a registry alias so a promotion reaches the server.

The served model is one reference in `ModelHolder`; a request reads it once and finishes with that
model, so swapping the reference never breaks a request in flight. `AliasFollower` checks the alias
every `interval` seconds; when it points at another version it loads and self-checks that version in a
worker thread (requests keep being answered by the old one meanwhile), then swaps it in.
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
            await asyncio.sleep(self.interval)
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a registry hiccup must not stop following, nor serving
                logger.warning("alias check failed, still serving the current model: %s", error)
