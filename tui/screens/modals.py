"""Modal dialogs: errors, prompt edits, the category picker, notes, new pairs."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from taxonomy_store.text import inert
from taxonomy_store.vocabulary import REVIEW_ORDER

from taxonomy_store.tui.widgets import CategoryTree, PromptCard, safe_text



class ErrorModal(ModalScreen[None]):
    """Any worker failure ends here: the message, the hint, and a key to dismiss."""

    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close", id="error.close")]

    def __init__(self, title: str, message: str, hint: str | None = None):
        super().__init__()
        self.title_text, self.message, self.hint = title, message, hint

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="error-dialog"):
            yield Label(Text(self.title_text, style="bold"), id="error-title")
            yield Static(safe_text(self.message, keep_newlines=True), id="error-message")
            if self.hint:
                yield Static(Text.assemble(("hint: ", "bold"), inert(self.hint)), id="error-hint")
            yield Button("Close", variant="error", id="error-close")

    @on(Button.Pressed, "#error-close")
    def _close(self) -> None:
        self.dismiss(None)


class CategoryPicker(ModalScreen[str | None]):
    """Pick a category from the taxonomy tree; returns its code (None when cancelled)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="picker.cancel")]

    def __init__(self, tree: Any, current: str | None = None):
        super().__init__()
        self.tax_tree, self.current = tree, current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="picker-dialog"):
            yield Label(Text(f"Category in {self.tax_tree.name} (enter picks; type to filter)", style="bold"))
            yield Static(id="picker-filter")
            yield CategoryTree(id="picker-tree")

    def on_mount(self) -> None:
        self.only = ""
        self._fill(self.current)
        self.query_one(CategoryTree).focus()

    def _fill(self, land_on: str | None) -> None:
        tree = self.query_one(CategoryTree)
        tree.load(self.tax_tree, expand_depth=9, only=self.only)
        self.query_one("#picker-filter", Static).update(
            Text.assemble(("filter: ", "bold"), inert(self.only), ("  (backspace erases)", "dim")) if self.only
            else Text("type letters to filter by code or name", style="dim"))
        needle = self.only.casefold()
        for line in range(tree.last_line + 1):
            node = tree.get_node_at_line(line)
            if node is None:
                continue
            if node.data == land_on or (land_on is None and needle and needle in (str(node.data).casefold() + str(node.label).casefold())):
                tree.move_cursor(node)
                break

    def on_key(self, event: Any) -> None:
        """Letters (not space: it folds a branch) narrow the tree; backspace widens it again."""
        if event.key == "backspace" and self.only:
            self.only = self.only[:-1]
        elif event.is_printable and event.character and event.character != " ":
            self.only += event.character
        else:
            return
        event.stop()
        event.prevent_default()
        self._fill(None)

    @on(CategoryTree.NodeSelected)
    def _picked(self, event: CategoryTree.NodeSelected) -> None:
        event.stop()
        if event.node.data:
            self.dismiss(event.node.data)

    def action_cancel(self) -> None:
        self.dismiss(None)


class EditPromptModal(ModalScreen[dict | None]):
    """Edit a prompt's text, label and category; returns only the fields that changed."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="edit.cancel"),
        Binding("ctrl+s", "save", "Save", id="edit.save"),
        Binding("ctrl+t", "pick_category", "Category", id="edit.category"),
    ]

    def __init__(self, prompt: Any, tree: Any | None):
        super().__init__()
        self.prompt, self.tax_tree = prompt, tree
        self.category = prompt.category_code
        # The editor shows (and edits) the inert form: a TextArea would send raw escapes to the terminal.
        self.shown_text = inert(prompt.text, keep_newlines=True)
        self.subject = f"prompt #{prompt.id}"  # what the discard question names

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="edit-dialog"):
            yield Label(Text(f"Edit prompt #{self.prompt.id}", style="bold"))
            if self.shown_text != self.prompt.text:
                yield Label(Text("control characters are shown as \\xNN escapes; an edited text keeps them as plain text",
                                 style="italic yellow"), id="edit-inert-note")
            yield TextArea(self.shown_text, id="edit-text", soft_wrap=True, show_line_numbers=False)
            with Horizontal(classes="edit-row"):
                yield Select([(lbl, lbl) for lbl in REVIEW_ORDER], value=self.prompt.label, allow_blank=False, id="edit-label")
                yield Button("Category… (ctrl+t)", id="edit-category")
            yield from self._category_and_buttons()

    def _category_and_buttons(self) -> ComposeResult:
        # the category on its own line, whole: a button cut it to "Category:" once picked
        yield Static(self._category_label(), id="edit-category-name")
        with Horizontal(classes="buttons"):
            yield Button("Save (ctrl+s)", variant="primary", id="edit-save")
            yield Button("Cancel", id="edit-cancel")

    def _category_label(self) -> Text:
        label = Text.assemble(("category: ", "bold"), (inert(self.category or "none"), "cyan"))
        if self.category != self.prompt.category_code:
            label.append(f"  (was {inert(self.prompt.category_code or 'none')})", style="yellow")
        return label

    FIRST = "#edit-text"  # the field focused on opening

    def on_mount(self) -> None:
        self.query_one(self.FIRST).focus()

    @on(Button.Pressed, "#edit-category")
    def action_pick_category(self) -> None:
        if self.tax_tree is None:
            self.notify("no taxonomy loaded", severity="warning")
            return

        def chosen(code: str | None) -> None:
            if code:
                self.category = code
                self.query_one("#edit-category-name", Static).update(self._category_label())

        self.app.push_screen(CategoryPicker(self.tax_tree, self.category), chosen)

    @on(Button.Pressed, "#edit-save")
    def action_save(self) -> None:
        self.dismiss(self.changes() or None)

    def changes(self) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        text = self.query_one("#edit-text", TextArea).text
        if text.strip() and text != self.shown_text:
            changes["text"] = text
        label = self.query_one("#edit-label", Select).value
        if label != self.prompt.label:
            changes["label"] = label
        if self.category != self.prompt.category_code:
            changes["category"] = self.category
            if self.tax_tree is not None:
                changes["taxonomy"] = self.tax_tree.name
        return changes

    @on(Button.Pressed, "#edit-cancel")
    def action_cancel(self) -> None:
        """Escape: leave at once when nothing changed, else ask before the edit is thrown away."""
        changed = self.changes()
        if not changed:
            self.dismiss(None)
            return
        what = ", ".join(k for k in changed if k != "taxonomy")
        question = Text.assemble(("Discard the changes to ", "bold"), (self.subject, "bold"),
                                 (f" ({what})?", "bold"), "\nNo goes back to the editor; ctrl+s there saves.")

        def answered(discard: bool | None) -> None:
            if discard:
                self.dismiss(None)

        self.app.push_screen(ConfirmModal(question, yes="Discard"), answered)


class BulkEditModal(EditPromptModal):
    """The edit modal for several marked prompts: a new label and/or category for all of them
    (their texts are not edited in bulk). Blank keeps each prompt's own; returns the changed fields."""

    FIRST = "#edit-label"

    def __init__(self, count: int, tree: Any | None):
        from types import SimpleNamespace

        # no one prompt: "keep" stands in for the label and category each marked prompt has
        super().__init__(SimpleNamespace(id=None, text="", label=None, category_code=None), tree)
        self.count = count
        self.subject = f"the {count} marked prompts"

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="edit-dialog"):
            yield Label(Text(f"Edit the {self.count} marked prompts (one edit: one u undoes it)", style="bold"))
            with Horizontal(classes="edit-row"):
                yield Select([(lbl, lbl) for lbl in REVIEW_ORDER], prompt="label: keep each one's", id="edit-label")
                yield Button("Category… (ctrl+t)", id="edit-category")
            yield from self._category_and_buttons()

    def _category_label(self) -> Text:
        if self.category is None:
            return Text.assemble(("category: ", "bold"), ("keep each one's", "dim"))
        return Text.assemble(("category: ", "bold"), (inert(self.category), "cyan"))

    def changes(self) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        label = self.query_one("#edit-label", Select).value
        if label is not Select.NULL and label is not None:
            changes["label"] = label
        if self.category is not None:
            changes["category"] = self.category
            if self.tax_tree is not None:
                changes["taxonomy"] = self.tax_tree.name
        return changes


class TextInputModal(ModalScreen[str | None]):
    """One line of input (a note, a search); returns the text or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="input.cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = ""):
        super().__init__()
        self.title_text, self.value, self.placeholder = title, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="input-dialog"):
            yield Label(Text(self.title_text, style="bold"))
            yield Input(self.value, placeholder=self.placeholder, id="modal-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class NewPairModal(ModalScreen[dict | None]):
    """Write a safe variant of an unsafe prompt (the Safety-Contrast workflow)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="newpair.cancel"),
        Binding("ctrl+s", "save", "Create", id="newpair.save"),
    ]

    def __init__(self, unsafe: Any, pair_types: list[str], default_type: str | None = None):
        super().__init__()
        self.unsafe, self.pair_types, self.default_type = unsafe, pair_types, default_type

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="edit-dialog"):
            yield Label(Text("New pair: write a safe variant", style="bold"))
            card = PromptCard(id="newpair-unsafe")
            yield card
            yield TextArea("", id="newpair-text", soft_wrap=True, show_line_numbers=False)
            options = [(t, t) for t in self.pair_types]
            yield Select(options, value=self.default_type if self.default_type in self.pair_types else Select.NULL,
                         prompt="pair type", id="newpair-type")
            with Horizontal(classes="buttons"):
                yield Button("Create (ctrl+s)", variant="primary", id="newpair-save")
                yield Button("Cancel", id="newpair-cancel")

    def on_mount(self) -> None:
        self.query_one(PromptCard).show(self.unsafe, "unsafe prompt")
        self.query_one("#newpair-text", TextArea).focus()

    @on(Button.Pressed, "#newpair-save")
    def action_save(self) -> None:
        text = self.query_one("#newpair-text", TextArea).text.strip()
        if not text:
            self.notify("write the safe variant first", severity="warning")
            return
        value = self.query_one("#newpair-type", Select).value
        self.dismiss({"safe_text": text, "pair_type": None if value is Select.NULL else value})

    @on(Button.Pressed, "#newpair-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmModal(ModalScreen[bool]):
    """A yes/no question for an action that writes at one key (y or enter: yes; n or escape: no)."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: Text | str, yes: str = "Yes"):
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="confirm-dialog"):
            yield Static(self.question if isinstance(self.question, Text) else Text(self.question), id="confirm-question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", variant="warning", id="confirm-yes")
                yield Button("No (n)", id="confirm-no")

    @on(Button.Pressed, "#confirm-yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-no")
    def _no(self) -> None:
        self.dismiss(False)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class KeysModal(ModalScreen[None]):
    """The keys of the screen it was opened on, then the keys that work on every screen."""

    BINDINGS = [Binding("escape,q,question_mark,f1,enter", "dismiss", "Close", id="keys.close")]

    def __init__(self, title: str, screen_keys: list[tuple[str, str]], app_keys: list[tuple[str, str]]):
        super().__init__()
        self.title_text, self.screen_keys, self.app_keys = title, screen_keys, app_keys

    def compose(self) -> ComposeResult:
        body = Text()
        body.append(f"Keys on the {self.title_text} screen\n", style="bold")
        for key, what in self.screen_keys:
            body.append(f"  {key:>10}  ", style="bold cyan")
            body.append(f"{what}\n")
        body.append("\nEverywhere\n", style="bold")
        for key, what in self.app_keys:
            body.append(f"  {key:>10}  ", style="bold cyan")
            body.append(f"{what}\n")
        body.append("\nescape closes this list", style="dim")
        with Vertical(id="dialog", classes="keys-dialog"):
            yield Static(body, id="keys-list")
