"""Rich renderings of ops data: the ``sharewise monitor`` panel, topic and dead-letter tables."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from engine.ops.dlq import DlqEntry
from engine.ops.snapshot import ClusterSnapshot
from engine.ops.status import Status, Verdict

STATUS_STYLE = {Status.OK: "bold green", Status.WARN: "bold yellow", Status.STALL: "bold magenta",
                Status.ERR: "bold red"}
#: partitions listed under "lagging partitions", the worst first
LAGGING_ROWS = 10
_TABLE: dict[str, Any] = {"box": box.SIMPLE_HEAD, "title_justify": "left", "title_style": "bold"}


def monitor_panel(obs: Any, title: str) -> Panel:
    """The live view of one :class:`streams.ops.monitor.Observation`."""
    parts: list[RenderableType] = [verdict_text(obs.verdict)]
    snap = obs.snapshot
    if snap is not None:
        parts += [topics_table(snap, obs.topic_rates), groups_table(snap, obs.commit_rates)]
        if (lagging := lagging_table(snap)) is not None:
            parts.append(lagging)
        parts.append(dlq_table(snap.dlq, obs.dlq_latest))
    parts.append(workers_view(obs))
    return Panel(Group(*parts), title=title, border_style=STATUS_STYLE[obs.verdict.status].split()[-1])


def verdict_text(verdict: Verdict, limit: int = 6) -> Text:
    text = Text.assemble(("status ", "bold"), (str(verdict.status), STATUS_STYLE[verdict.status]))
    for f in verdict.findings[:limit]:
        text.append(f"\n  {f.status} ", STATUS_STYLE[f.status])
        text.append(f"{f.subject}: {f.detail}")
    if len(verdict.findings) > limit:
        text.append(f"\n  … {len(verdict.findings) - limit} more")
    return text


def topics_table(snap: ClusterSnapshot, rates: Mapping[str, float]) -> Table:
    table = Table("topic", "parts", "messages", "high watermarks", "in msg/s", title="topics", **_TABLE)
    for topic, parts in sorted(snap.topics.items()):
        highs = " ".join(str(parts[p].high) for p in sorted(parts))
        rate = f"{rates[topic]:,.1f}" if topic in rates else "-"
        table.add_row(topic, str(len(parts)), f"{sum(e.messages for e in parts.values()):,}", _clip(highs, 48), rate)
    return table


def groups_table(snap: ClusterSnapshot, rates: Mapping[tuple[str, str], float]) -> Table:
    table = Table("group", "members", "topic", "parts", "committed", "lag", "max lag s", "out msg/s",
                  title="consumer groups", **_TABLE)
    for group, by_topic in sorted(snap.groups.items()):
        members = snap.members.get(group)
        for topic, parts in sorted(by_topic.items()):
            ages = [gp.lag_seconds for gp in parts.values() if gp.lag_seconds is not None]
            rate = rates.get((group, topic))
            committed, lag = sum(gp.committed for gp in parts.values()), sum(gp.lag for gp in parts.values())
            table.add_row(group, "n/a" if members is None else str(members), topic, str(len(parts)), f"{committed:,}",
                          f"{lag:,}", f"{max(ages):.1f}" if ages else "-", "-" if rate is None else f"{rate:,.1f}")
    if not snap.groups:
        table.add_row("(no consumer group has committed offsets)", "", "", "", "", "", "", "")
    return table


def lagging_table(snap: ClusterSnapshot) -> Table | None:
    rows = sorted(((gp.lag, g, t, p, gp) for g, by_topic in snap.groups.items() for t, parts in by_topic.items()
                   for p, gp in parts.items() if gp.lag > 0), key=lambda r: (-r[0], r[1], r[2], r[3]))
    if not rows:
        return None
    table = Table("group", "topic", "partition", "committed", "high", "lag", "lag s",
                  title="lagging partitions", **_TABLE)
    for lag, g, t, p, gp in rows[:LAGGING_ROWS]:
        age = "-" if gp.lag_seconds is None else f"{gp.lag_seconds:.1f}"
        table.add_row(g, t, str(p), str(gp.committed), str(snap.topics[t][p].high), str(lag), age)
    return table


def dlq_table(counts: Mapping[str, int], latest: list[DlqEntry]) -> RenderableType:
    if not counts:
        return Text("dead letters: none")
    summary = Text("dead letters: " + ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items())))
    return Group(summary, dlq_entries_table(list(reversed(latest)), title="latest"))


def dlq_entries_table(entries: list[DlqEntry], title: str = "") -> Table:
    table = Table("time", "reason", "detail", "source", "original", "dlq at", title=title or None, **_TABLE)
    for e in entries:
        letter = e.letter
        source = "-" if letter is None else f"{letter.topic}[{letter.partition}]@{letter.offset} line {letter.line}"
        original = e.raw if letter is None else letter.original
        table.add_row(when(e.timestamp_ms, short=True), e.reason, _clip(letter.detail if letter else "", 40), source,
                      _clip(original.decode(errors="replace"), 60), f"{e.partition}@{e.offset}")
    return table


def workers_view(obs: Any) -> RenderableType:
    if obs.database:
        return Text(f"workers: not known ({obs.database})", style="dim")
    if not obs.beats:
        return Text("workers: none has reported a heartbeat")
    table = Table("worker", "group", "partitions", "heartbeat s", "ticks", "sink backlog", "oldest checkpoint s",
                  title="workers", **_TABLE)
    oldest: dict[str, float] = {}
    for c in obs.checkpoints:
        oldest[c.worker_id] = max(c.age, oldest.get(c.worker_id, 0.0))
    for b in obs.beats:
        table.add_row(b.worker_id, b.group, _clip(",".join(map(str, b.partitions)), 24), f"{b.age:.1f}",
                      f"{b.stats.get('ticks', 0):,}", str(b.stats.get("sink_backlog", "-")),
                      f"{oldest[b.worker_id]:.1f}" if b.worker_id in oldest else "-")
    return table


def when(timestamp_ms: int, *, short: bool = False) -> str:
    """A record timestamp in local time: ISO 8601 to the second, or ``MM-DD HH:MM:SS`` when ``short``."""
    moment = dt.datetime.fromtimestamp(timestamp_ms / 1000).astimezone()
    return moment.strftime("%m-%d %H:%M:%S") if short else moment.isoformat(timespec="seconds")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def status_table(lines: list[tuple[str, bool | None, str]]) -> Table:
    """``sharewise status``: one line per component, up / down / unknown."""
    table = Table(box=None, show_header=False, pad_edge=False)
    for component, up, detail in lines:
        word = "[green]up[/]" if up else ("[yellow]unknown[/]" if up is None else "[bold red]down[/]")
        table.add_row(component, word, detail)
    return table
