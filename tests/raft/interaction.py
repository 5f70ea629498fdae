"""Golden interaction scripts for the Raft core (after etcd-io/raft's datadriven tests).

A script file holds blocks::

    # optional comment lines
    command arg arg key=value
    ----
    transcript lines the command produced

separated by blank lines. Commands:

    add-nodes N [pre-vote=bool] [check-quorum=bool] [lease-read=bool] [election=T]
                [max-entries=K] [max-inflight=K] [bugs=name] [seed=S]
    campaign ID            propose ID DATA          read-index ID CTX
    tick ID|all N          deliver                  stabilize
    run N                  (tick all, stabilize; N times)

``run`` and ``tick`` with a count above 1 leave heartbeats out of the transcript.
    partition 1 | 2 3      isolate ID               heal
    crash ID               restart ID               compact ID INDEX
    add-learner LEADER ID  add-voter LEADER ID      promote LEADER ID   remove LEADER ID
    transfer LEADER ID     report-unreachable LEADER ID
    status [ID ...]        log ID                   applied

Commands that change a node process its Ready right away, so the transcript shows
what it persisted, applied and sent; ``deliver`` hands every in-flight message to
its target once, ``stabilize`` repeats until no message is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from syndic.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    InvariantError,
    RaftConfig,
    RaftError,
)

from .network import Network, describe_entries

SEPARATOR = "----"


@dataclass
class Block:
    comments: list[str]
    command: str
    output: list[str] = field(default_factory=list)


def parse_script(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    comments: list[str] = []
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            if line.startswith("#"):
                comments.append(line)
            i += 1
            continue
        command = line
        i += 1
        if i >= len(lines) or lines[i] != SEPARATOR:
            raise ValueError(f"line {i}: expected {SEPARATOR!r} after command {command!r}")
        i += 1
        output = []
        while i < len(lines) and lines[i].strip():
            output.append(lines[i])
            i += 1
        blocks.append(Block(comments, command, output))
        comments = []
    return blocks


def render_script(blocks: list[Block]) -> str:
    chunks = []
    for block in blocks:
        chunk = [*block.comments, block.command, SEPARATOR, *block.output]
        chunks.append("\n".join(chunk))
    return "\n\n".join(chunks) + "\n"


def _collapse(lines: list[str]) -> list[str]:
    """Within each run of indented (message) lines, print repeats once with a count."""
    out: list[str] = []
    run: dict[str, int] = {}

    def flush() -> None:
        out.extend(line if n == 1 else f"{line} (x{n})" for line, n in run.items())
        run.clear()

    for line in lines:
        if line.startswith("  "):
            run[line] = run.get(line, 0) + 1
        else:
            flush()
            out.append(line)
    flush()
    return out


def _is_chatter(line: str) -> bool:
    stripped = line.strip()
    return "HEARTBEAT" in stripped or (stripped.endswith(":") and " " not in stripped)


def _bool(value: str) -> bool:
    if value not in ("true", "false"):
        raise ValueError(f"expected true/false, got {value!r}")
    return value == "true"


class Interaction:
    """Runs script commands against a :class:`Network`."""

    def __init__(self) -> None:
        self._net: Network | None = None

    @property
    def net(self) -> Network:
        if self._net is None:
            raise ValueError("no cluster yet: start with add-nodes")
        return self._net

    def run(self, command: str) -> list[str]:
        words = command.split()
        name, args = words[0], words[1:]
        handler = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        try:
            lines: list[str] = handler(args)
        except InvariantError:
            raise
        except RaftError as exc:
            lines = [f"error: {type(exc).__name__}: {exc}", *self.net.process_all()]
        return _collapse(lines) or ["ok"]

    # -- cluster ---------------------------------------------------------------

    def cmd_add_nodes(self, args: list[str]) -> list[str]:
        count = int(args[0])
        options = dict(arg.split("=", 1) for arg in args[1:])
        fields: dict[str, object] = {}
        seed = 1
        for key, value in options.items():
            if key == "pre-vote":
                fields["pre_vote"] = _bool(value)
            elif key == "check-quorum":
                fields["check_quorum"] = _bool(value)
            elif key == "lease-read":
                fields["lease_read"] = _bool(value)
            elif key == "election":
                fields["election_timeout_ticks"] = int(value)
            elif key == "max-entries":
                fields["max_entries_per_message"] = int(value)
            elif key == "max-inflight":
                fields["max_inflight_messages"] = int(value)
            elif key == "bugs":
                fields["planted_bugs"] = frozenset(value.split(","))
            elif key == "seed":
                seed = int(value)
            else:
                raise ValueError(f"unknown add-nodes option {key!r}")
        RaftConfig(node_id=1, **fields)  # type: ignore[arg-type]
        self._net = Network(count, seed=seed, **fields)
        return [
            f"{count} voters, {', '.join(f'{k}={v}' for k, v in options.items()) or 'defaults'}"
        ]

    def _node_id(self, word: str) -> int:
        node_id = int(word)
        if node_id not in self.net.nodes:
            raise ValueError(f"no node {node_id}")
        return node_id

    def cmd_campaign(self, args: list[str]) -> list[str]:
        self.net.nodes[self._node_id(args[0])].campaign()
        return self.net.process_all()

    def cmd_propose(self, args: list[str]) -> list[str]:
        node_id = self._node_id(args[0])
        index = self.net.nodes[node_id].propose(" ".join(args[1:]).encode())
        return [f"index {index}", *self.net.process_all()]

    def cmd_read_index(self, args: list[str]) -> list[str]:
        self.net.nodes[self._node_id(args[0])].read_index(args[1].encode())
        return self.net.process_all()

    def cmd_tick(self, args: list[str]) -> list[str]:
        count = int(args[1])
        if args[0] == "all":
            targets = sorted(set(self.net.nodes) - self.net.down)
        else:
            targets = [self._node_id(args[0])]
        for _ in range(count):
            for node_id in targets:
                self.net.tick(node_id)
        lines = self.net.process_all()
        if count > 1:
            lines = [line for line in lines if not _is_chatter(line)]
        return lines

    def cmd_deliver(self, args: list[str]) -> list[str]:
        lines = self.net.process_all()
        lines.extend(self.net.deliver_once())
        lines.extend(self.net.process_all())
        return lines

    def cmd_stabilize(self, args: list[str]) -> list[str]:
        return self.net.stabilize()

    def cmd_run(self, args: list[str]) -> list[str]:
        """Tick every live node once and stabilize, N times; heartbeat chatter omitted."""
        lines = self.net.tick_all(int(args[0]))
        return [line for line in lines if not _is_chatter(line)]

    def cmd_partition(self, args: list[str]) -> list[str]:
        groups = [{int(w) for w in group.split()} for group in " ".join(args).split("|")]
        self.net.partition(*groups)
        return []

    def cmd_isolate(self, args: list[str]) -> list[str]:
        self.net.isolate(self._node_id(args[0]))
        return []

    def cmd_heal(self, args: list[str]) -> list[str]:
        self.net.heal()
        return []

    def cmd_crash(self, args: list[str]) -> list[str]:
        node_id = self._node_id(args[0])
        self.net.down.add(node_id)
        return []

    def cmd_restart(self, args: list[str]) -> list[str]:
        node_id = self._node_id(args[0])
        self.net.down.discard(node_id)
        self.net.restart(node_id)
        return [self._status_line(node_id), *self.net.process_all()]

    def cmd_compact(self, args: list[str]) -> list[str]:
        node_id = self._node_id(args[0])
        snap = self.net.compact(node_id, int(args[1]))
        node = self.net.nodes[node_id]
        return [f"snapshot {snap.meta.term}/{snap.meta.index}; log now {node.first_index}.."]

    # -- membership --------------------------------------------------------------

    def _conf_change(self, args: list[str], kind: ConfChangeType) -> list[str]:
        leader, target = self._node_id(args[0]), int(args[1])
        index = self.net.nodes[leader].propose_conf_change(ConfChange(kind, target))
        if target not in self.net.nodes:
            # A joining node starts empty and learns everything from the leader.
            self.net.add_node(target, ConfState(voters=frozenset()))
        return [f"index {index}", *self.net.process_all()]

    def cmd_add_learner(self, args: list[str]) -> list[str]:
        return self._conf_change(args, ConfChangeType.ADD_LEARNER)

    def cmd_add_voter(self, args: list[str]) -> list[str]:
        return self._conf_change(args, ConfChangeType.ADD_VOTER)

    cmd_promote = cmd_add_voter

    def cmd_remove(self, args: list[str]) -> list[str]:
        return self._conf_change(args, ConfChangeType.REMOVE_NODE)

    def cmd_transfer(self, args: list[str]) -> list[str]:
        self.net.nodes[self._node_id(args[0])].transfer_leadership(int(args[1]))
        return self.net.process_all()

    def cmd_report_unreachable(self, args: list[str]) -> list[str]:
        self.net.nodes[self._node_id(args[0])].report_unreachable(int(args[1]))
        return []

    # -- observation -------------------------------------------------------------

    def _status_line(self, node_id: int) -> str:
        node = self.net.nodes[node_id]
        conf = node.conf_state
        text = (
            f"{node_id}: {node.role.name} term={node.term} lead={node.leader_id} "
            f"commit={node.commit_index} applied={node.applied_index} "
            f"log={node.first_index}..{node.last_index} voters={sorted(conf.voters)}"
        )
        if conf.learners:
            text += f" learners={sorted(conf.learners)}"
        if node_id in self.net.down:
            text += " (down)"
        return text

    def cmd_status(self, args: list[str]) -> list[str]:
        ids = [self._node_id(a) for a in args] or sorted(self.net.nodes)
        lines = []
        for node_id in ids:
            lines.append(self._status_line(node_id))
            progress = self.net.nodes[node_id].status()["progress"]
            assert isinstance(progress, dict)
            for peer, pr in progress.items():
                lines.append(
                    f"  {peer}: {pr['state']} match={pr['match']} next={pr['next']} "
                    f"inflight={pr['inflight']}" + (" learner" if pr["learner"] else "")
                )
        return lines

    def cmd_log(self, args: list[str]) -> list[str]:
        node = self.net.nodes[self._node_id(args[0])]
        return [describe_entries(node.entries_between(node.first_index, node.last_index + 1))]

    def cmd_applied(self, args: list[str]) -> list[str]:
        return [
            f"{node_id}: {[d.decode() for d in self.net.applied_data(node_id)]}"
            for node_id in sorted(self.net.nodes)
        ]


def run_script(path: Path) -> tuple[str, str]:
    """Run the script at ``path``; returns (expected text, actual text)."""
    expected = path.read_text()
    blocks = parse_script(expected)
    interaction = Interaction()
    actual_blocks = []
    for block in blocks:
        output = interaction.run(block.command)
        actual_blocks.append(Block(block.comments, block.command, output))
    return expected, render_script(actual_blocks)
