"""A click group whose verbs are imported only when one is run.

Importing every verb made each ``syndic`` run pay for all of them: about
1.1 CPU seconds, most of it the simulator, the configuration centre and the
registry agent, where ``syndic serve`` needs only the member. The group
knows each verb's name and one-line help from a table, so ``syndic --help``
lists them all without importing any; a verb's module is imported the first
time the verb is looked up. ``tests/cli/test_lazy_verbs.py`` keeps the table
equal to each verb's own help.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True, slots=True)
class Verb:
    """Where a verb's command object lives, and its one-line help.

    ``summary`` is what ``command.get_short_help_str()`` returns for the real
    command with no length limit: the first sentence of its docstring."""

    module: str
    attribute: str
    summary: str

    def __post_init__(self) -> None:
        if not self.module.startswith("syndic.") or not self.attribute.isidentifier():
            raise ValueError(f"verb target {self.module}:{self.attribute} is not a syndic name")
        if not self.summary or "\n" in self.summary:
            raise ValueError(f"verb {self.module}:{self.attribute} needs a one-line summary")


class VerbLoadError(RuntimeError):
    """A verb's table entry names something that is not that verb's command."""


def load_verb(name: str, verb: Verb) -> click.Command:
    """Import ``verb``'s module and return its command, checked to be ``name``."""
    module = importlib.import_module(verb.module)
    command = getattr(module, verb.attribute, None)
    if not isinstance(command, click.Command):
        raise VerbLoadError(f"{verb.module}.{verb.attribute} is not a click command (verb {name})")
    if command.name != name:
        raise VerbLoadError(
            f"{verb.module}.{verb.attribute} is named {command.name!r}, listed as {name!r}"
        )
    return command


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's ``commands`` mapping: names are known up front, commands are
    imported on first lookup.

    Membership, iteration and length never import anything, so click's
    ``list_commands`` and its "did you mean" suggestions stay cheap; a lookup
    (``get_command``, ``commands[name]``) imports that one verb. Commands
    added with ``add_command`` are held as given."""

    def __init__(self, verbs: Mapping[str, Verb]) -> None:
        self._verbs: dict[str, Verb] = dict(verbs)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        command = self._loaded.get(name)
        if command is None:
            command = load_verb(name, self._verbs[name])
            self._loaded[name] = command
        return command

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._verbs.pop(name, None)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._verbs.pop(name, None)
        self._loaded.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._verbs or name in self._loaded

    def __iter__(self) -> Iterator[str]:
        yield from self._verbs
        yield from (name for name in self._loaded if name not in self._verbs)

    def __len__(self) -> int:
        return len(self._verbs.keys() | self._loaded.keys())

    def listing(self, name: str) -> click.Command:
        """The command as ``--help`` lists it: the real one if it is already
        imported or was added directly, else a stand-in carrying the table's
        summary, so the listing imports nothing."""
        command = self._loaded.get(name)
        if command is not None:
            return command
        return click.Command(name, help=self._verbs[name].summary)


class LazyGroup(click.Group):
    """A ``click.Group`` over a :class:`LazyCommands` table whose help lists
    every verb without importing them."""

    def __init__(
        self, name: str | None = None, *, verbs: Mapping[str, Verb], **kwargs: Any
    ) -> None:
        self.lazy_commands = LazyCommands(verbs)
        super().__init__(name, commands=self.lazy_commands, **kwargs)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own layout (name column, then short help cut to the width
        # left), with each row's help taken from the listing, not an import.
        commands = [(name, self.lazy_commands.listing(name)) for name in self.list_commands(ctx)]
        shown = [(name, command) for name, command in commands if not command.hidden]
        if not shown:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in shown)
        rows = [(name, command.get_short_help_str(limit)) for name, command in shown]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
