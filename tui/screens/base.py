"""What every store-backed screen shares: the facade, and turning worker failures into a modal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.screen import Screen
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from ..host import StoreHost


class StoreScreen(Screen):
    """A screen that reads and writes only through `self.store` (the facade), always in workers.

    Worker methods are `@work(thread=True, exclusive=True, exit_on_error=False, group=...)`;
    they post a message back with their result, and a failure lands in `on_worker_state_changed`,
    which hands it to the app's single error handler (an error modal).
    """

    app: "StoreHost"  # type: ignore[assignment]

    @property
    def store(self) -> Any:
        return self.app.store

    @property
    def encoder(self) -> str | None:
        return self.app.encoder

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.app.report_error(event.worker.error, where=event.worker.group)
        self.app.worker_changed(event.worker, event.state)

    def on_mount(self) -> None:
        self.watch(self.app, "encoder", self._encoder_changed, init=False)
        self.refresh_data()

    def _encoder_changed(self, _old: str | None, _new: str | None) -> None:
        self.refresh_data()

    def refresh_data(self) -> None:
        """Reload what the screen shows (in a worker)."""

    def action_refresh(self) -> None:
        self.refresh_data()
