"""What screens and the command palette use of the app that hosts them.

Screens are built by the app, so they cannot import it without a cycle; they name this
protocol instead (`TStoreApp` implements it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from taxonomy_store.facade import StoreFacade


class StoreHost(Protocol):
    SCREEN_TITLES: dict[str, str]
    store: StoreFacade
    encoder: str | None
    encoder_names: list[str]
    taxonomy: str
    pair_types: list[str]
    levels: dict[str, list[str]]
    current_mode: str

    def level_for(self, taxonomy: str) -> str: ...

    def use_encoder(self, name: str) -> None: ...

    def update_subtitle(self) -> None: ...

    def report_error(self, error: BaseException | None, where: str | None = None, screen: Any = None) -> None: ...

    def record_edit(self, edit: Any) -> None: ...

    def notify(self, message: str, *, title: str = "", severity: Any = "information", timeout: float | None = None,
               markup: bool = True) -> None: ...

    def worker_changed(self, worker: Any, state: Any) -> None: ...

    def push_screen(self, screen: Any, callback: Callable[..., Any] | None = None) -> Any: ...

    def switch_mode(self, mode: str) -> Any: ...

    def call_from_thread(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...
