"""Every trace note line, and the one path that writes notes: a compare-and-swap notes commit.

Per linked session a note holds two lines:

    hf-trace: <url>
    hf-trace-meta: {"agent":...,"bytes":...,"lines":[first,last],"session":...,"sha256":...,"url":...,"v":1}

The first is the recipe's line, unchanged. The second is one JSON object with sorted keys, so
the same link always renders to the same bytes (writing it twice is a no-op) and notes merged
with `cat_sort_uniq` stay meaningful: every meta line names its own URL, so pairing does not
depend on line order. Optional keys (`redacted`, `usage`: tokens per model) are left out when
unknown, so a link without them renders the bytes it did before they existed. A forgotten link
is replaced by one `hf-trace-forgotten:` line (a tombstone). See docs/notes.md.

Writing. `git notes add/append` read the notes tree when they start and move the ref at the end
without checking what it points at (git/git notes-utils.c `commit_notes`: `refs_update_ref(...,
old_oid=NULL)`), so two writers lose each other's lines. `write` builds the notes commit with
plumbing instead (blobs, trees with `mktree`, `commit-tree` on the tip it read) and moves the ref
with `git update-ref <ref> <new> <old>`: if anyone moved it meanwhile, nothing is replaced and
the whole edit is redone on the new tip. That keeps every line of anyone else's. The other way
round cannot be prevented from here: a user's `git notes append` that read the ref before our
write and lands after it writes back a tree without our lines. So every write first looks at
the notes commits made since our newest one and puts back any line of ours (links, meta lines,
tombstones) that one of them dropped; our lines are only ever removed by tracekeeper itself
(`tracekeeper forget` turns them into tombstones), or with the whole note by `git notes
remove`/`prune`.

Finding "our newest one" cannot rely on the tip's history alone: that stale append also takes
its parent from the ref (notes-utils.c `create_notes_commit`), and if it read the ref before our
commit landed its commit does not contain ours at all: a root commit when the ref did not exist
yet, or one on an older commit of ours. So every swap also moves a private ref,
`refs/tracekeeper/notes-written/<ref without refs/>` (`written_ref`), to the same commit in the same
transaction; when that commit is not in the tip's history, the lines it had are compared with
what the oldest commit since then kept, and the ones of ours it dropped come back. Unless the
ref was deleted since (its reflog, which a delete takes along, no longer names our commit): a
notes ref deleted whole stays deleted, whoever writes it first afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import git
from . import plumbing as plumbing_mod
from .agents.usage import Usage
from .errors import GitError, TransientError
from .plumbing import Plumbing

LINK_PREFIX = "hf-trace: "
META_PREFIX = "hf-trace-meta: "
#: A forgotten link (`tracekeeper forget`): one JSON object, like a meta line (docs/rewrites.md).
TOMBSTONE_PREFIX = "hf-trace-forgotten: "
FORMAT_VERSION = 1

#: The subject of every notes commit we make; how `write` tells our commits from others'.
COMMIT_MESSAGE = "Notes added by tracekeeper"
#: How far back `write` looks for commits made since our newest one.
REPAIR_DEPTH = 64
#: How far back from a removal commit `write` looks for the notes tree its author had read.
REMOVAL_BASE_DEPTH = 16
#: Where `write` keeps the notes commit it made last, per notes ref: outside refs/notes/, so no
#: `git notes` command and no notes push (sync.py pushes only `<oid>:<notes ref>`) ever sees it.
WRITTEN_PREFIX = "refs/tracekeeper/notes-written/"

#: How `write` waits between attempts; a test replaces it to see the waits without spending them.
_sleep: Callable[[float], None] = time.sleep

#: Note text is decoded so that any bytes (a user's note in Latin-1) survive a rewrite unchanged.
_ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}


# --- links -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceLink:
    url: str
    agent: str
    session_id: str
    first_line: int
    last_line: int
    bytes: int
    sha256: str
    #: {"counts": {rule: n}, "ruleset": id}: redaction ran on what was uploaded.
    redacted: dict[str, object] | None = None
    #: Tokens per model spent in lines first..last (agents/usage.py), as the agent recorded them.
    #: None is "unknown" (the agent records none, or a note from before usage): the key is then
    #: left out, so such a link renders the bytes it always did. An empty Usage is a known zero.
    usage: Usage | None = None

    def lines(self) -> list[str]:
        meta: dict[str, object] = {
            "agent": self.agent,
            "bytes": self.bytes,
            "lines": [self.first_line, self.last_line],
            "session": self.session_id,
            "sha256": self.sha256,
            "url": self.url,
            "v": FORMAT_VERSION,
        }
        if self.redacted is not None:
            meta["redacted"] = self.redacted
        if self.usage is not None:
            meta["usage"] = self.usage.to_json()
        return [LINK_PREFIX + self.url, META_PREFIX + json.dumps(meta, sort_keys=True, separators=(",", ":"))]


def parse(text: str) -> list[TraceLink]:
    """Every link in a note; lines that are not ours (or are damaged) are ignored, not fatal.

    Notes merge line by line, so one slice can have two meta lines that differ only in optional
    keys (noted by a daemon from before `usage`, then again by a newer one): they are one link,
    at the first one's place, with what either of them knows.
    """
    links: list[TraceLink] = []
    seen: dict[tuple[str, int, int, int, str], int] = {}
    for line in text.splitlines():
        if not line.startswith(META_PREFIX):
            continue
        try:
            meta = json.loads(line[len(META_PREFIX) :])
            links.append(
                TraceLink(
                    url=str(meta["url"]),
                    agent=str(meta["agent"]),
                    session_id=str(meta["session"]),
                    first_line=int(meta["lines"][0]),
                    last_line=int(meta["lines"][1]),
                    bytes=int(meta["bytes"]),
                    sha256=str(meta["sha256"]),
                    redacted=meta.get("redacted") if isinstance(meta.get("redacted"), dict) else None,
                    # A teammate's note is hostile: a damaged value is "unknown", never a lost link.
                    usage=Usage.from_json(meta.get("usage")),
                )
            )
        except (ValueError, KeyError, IndexError, TypeError, RecursionError):
            continue  # RecursionError: nested deeper than json.loads goes (a hostile pulled note)
        link = links[-1]
        key = (link.url, link.first_line, link.last_line, link.bytes, link.sha256)
        if key in seen:
            links.pop()
            first = links[seen[key]]
            links[seen[key]] = replace(
                first,
                redacted=link.redacted if first.redacted is None else first.redacted,
                usage=link.usage if first.usage is None else first.usage,
            )
        else:
            seen[key] = len(links) - 1
    return links


# --- tombstones --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tombstone:
    url: str
    agent: str | None
    session_id: str | None
    at: str  # ISO 8601, UTC, seconds
    by: str

    def line(self) -> str:
        body = {"agent": self.agent, "at": self.at, "by": self.by, "session": self.session_id, "url": self.url, "v": 1}
        return TOMBSTONE_PREFIX + json.dumps(body, sort_keys=True, separators=(",", ":"))


def parse_tombstones(text: str) -> list[Tombstone]:
    out: list[Tombstone] = []
    for line in text.splitlines():
        if not line.startswith(TOMBSTONE_PREFIX):
            continue
        try:
            body = json.loads(line[len(TOMBSTONE_PREFIX) :])
            out.append(
                Tombstone(
                    url=str(body["url"]),
                    agent=body.get("agent"),
                    session_id=body.get("session"),
                    at=str(body.get("at", "")),
                    by=str(body.get("by", "")),
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            continue
    return out


def live_links(text: str, dead: Iterable[str] = ()) -> list[TraceLink]:
    """The links of a note that still stand: every link but those a tombstone in the note (or
    `dead`: URLs tombstoned in other notes) declares forgotten. Notes merge line by line, so a
    merge can bring a live line back next to its tombstone; the tombstone always wins. The one
    answer to "what does this commit link": show, log, why, summary, search and the web ask it."""
    gone = {stone.url for stone in parse_tombstones(text)}.union(dead)
    return [link for link in parse(text) if link.url not in gone]


def _tombstone_url(line: str) -> str | None:
    try:
        value = json.loads(line[len(TOMBSTONE_PREFIX) :])
    except (ValueError, RecursionError):
        return None
    url = value.get("url") if isinstance(value, dict) else None
    return url if isinstance(url, str) else None


def _meta_url(line: str) -> str | None:
    parsed = parse(line)
    return parsed[0].url if parsed else None


def line_url(line: str) -> str | None:
    """The URL a link or meta line is about (None for any other line, tombstones included)."""
    if line.startswith(META_PREFIX):
        return _meta_url(line)
    if line.startswith(LINK_PREFIX):
        return line[len(LINK_PREFIX) :].strip()
    return None


def trace_lines(text: str) -> list[str]:
    """The lines of a note that are tracekeeper's (links, meta, tombstones), in note order."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith(META_PREFIX):
            if _meta_url(line) is not None:
                out.append(line)
        elif line.startswith(TOMBSTONE_PREFIX):
            if _tombstone_url(line) is not None:
                out.append(line)
        elif line.startswith(LINK_PREFIX):
            out.append(line)
    return out


def tombstoned_urls(lines: Iterable[str]) -> set[str]:
    return {url for line in lines if line.startswith(TOMBSTONE_PREFIX) and (url := _tombstone_url(line))}


def bury(text: str, stones: Mapping[str, Tombstone]) -> str | None:
    """The note with every line of a forgotten URL replaced by its tombstone (at the first such
    line's place), or None when nothing changes. An existing tombstone is kept as it is."""
    have = {t.url for t in parse_tombstones(text)}
    out: list[str] = []
    changed = False
    for line in text.splitlines():
        url = line_url(line)
        if url is None or url not in stones:
            out.append(line)
            continue
        changed = True
        if url not in have:
            out.append(stones[url].line())
            have.add(url)
    if not changed:
        return None
    return "\n".join(out).strip("\n") + "\n"


# --- merging lines -----------------------------------------------------------------------


def add_missing(existing: str, incoming: Iterable[str]) -> str | None:
    """`existing` with the `incoming` lines it lacks appended, or None when it has them all.

    The existing text is kept byte for byte (only trailing blank lines are folded into one
    newline), so a user's note keeps its shape.
    """
    have = set(existing.splitlines())
    missing = [line for line in dict.fromkeys(incoming) if line.strip() and line not in have]
    if not missing:
        return None
    body = existing.rstrip("\n")
    return (body + "\n" if body else "") + "".join(line + "\n" for line in missing)


def merge_lines(existing: str, incoming: Iterable[str]) -> str | None:
    """`existing` plus the `incoming` lines it lacks, or None when nothing changes.

    A tombstone always wins: a link whose URL was forgotten is dropped, wherever it came from,
    so a relink (or a repair of a lost update) can never resurrect a dead link.
    """
    text = add_missing(existing, incoming)
    current = existing if text is None else text
    dead = tombstoned_urls(current.splitlines())
    if dead and any(line_url(line) in dead for line in current.splitlines()):
        kept = [line for line in current.split("\n") if line_url(line.rstrip("\r")) not in dead]
        text = "\n".join(kept).strip("\n") + "\n"
    return text


# --- reading -----------------------------------------------------------------------------


def read(git_dir: Path, ref: str, sha: str) -> str:
    proc = git.run(git_dir, ["notes", f"--ref={ref}", "show", sha], check=False)
    if proc.returncode != 0:
        return ""
    return proc.stdout.decode(**_ENCODING)


def all_notes(git_dir: Path, ref: str) -> dict[str, str]:
    """{annotated object: note text} for the whole ref, in two git processes whatever its size."""
    proc = git.run(git_dir, ["notes", f"--ref={ref}", "list"], check=False)
    if proc.returncode != 0:
        return {}
    pairs = [line.split() for line in proc.stdout.decode().splitlines()]
    pairs = [p for p in pairs if len(p) == 2]
    if not pairs:
        return {}
    blobs = git.run(git_dir, ["cat-file", "--batch"], input="".join(f"{b}\n" for b, _ in pairs).encode())
    texts = _batch_contents(blobs.stdout)
    return {obj: texts.get(blob, "") for blob, obj in pairs}


def _batch_contents(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        header = data[pos:end].decode().split()
        pos = end + 1
        if len(header) < 3 or header[1] == "missing":
            continue
        size = int(header[2])
        out[header[0]] = data[pos : pos + size].decode(**_ENCODING)
        pos += size + 1
    return out


# --- the notes tree ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    mode: str  # octal, as in the tree object ("100644", "40000")
    oid: str

    @property
    def is_tree(self) -> bool:
        return self.mode == "40000"

    @property
    def is_file(self) -> bool:
        return self.mode.startswith("100")

    @property
    def kind(self) -> str:
        return "tree" if self.is_tree else "commit" if self.mode == "160000" else "blob"


_HEX = re.compile(r"[0-9a-f]+")
#: The start of an entry line for `mktree`, for the modes of nearly every notes tree entry.
_MKTREE_HEAD = {"100644": b"100644 blob ", "40000": b"040000 tree "}
_CANON_MODE = {"100644": "100644", "40000": "40000"}
#: Parsed trees a kept repository holds (plumbing.Plumbing.trees): a write touches the root and
#: one fanout directory or two, so this holds those of hundreds of writes.
TREES_KEPT = 1024


class _Session:
    """One write's git processes: `cat-file --batch` to read objects one at a time (git flushes
    each answer, so it can be used interactively), `mktree -z --batch` to make trees, whatever
    the number of notes, and `update-ref --stdin` for the swap. They come from the caller's
    `Plumbing` (the daemon keeps one per busy repository: a burst starts them once),
    or from one of the session's own, closed with it. Killed after `timeout` so a hung git
    cannot hang us."""

    def __init__(self, git_dir: Path, timeout: float, kept: Plumbing | None = None) -> None:
        self.git_dir = git_dir
        self.own = kept is None
        self.plumbing = kept if kept is not None else Plumbing(git_dir)
        # One watchdog thread for every write's deadline, not a timer thread per write.
        self.deadline = plumbing_mod.WATCHDOG.arm(timeout, self.plumbing.kill)

    def close(self) -> None:
        plumbing_mod.WATCHDOG.disarm(self.deadline)
        if self.own:
            self.plumbing.close()

    def object(self, name: str) -> tuple[str, str, bytes] | None:
        """(oid, type, content) of `name`, or None if there is no such object.

        Not cached across writes: a write reads the tip it builds on and the trees on the paths
        it writes, all of which the write before it replaced (a cache by oid, measured with
        bench/bench_notes.py, never hit)."""
        cat = self.plumbing.pipe("cat-file", ["cat-file", "--batch"])
        try:
            cat.stdin.write(name.encode() + b"\n")
            cat.stdin.flush()
            header = cat.stdout.readline().decode().split()
            if len(header) == 3:
                oid, kind, size = header[0], header[1], int(header[2])
                data = cat.stdout.read(size + 1)[:size]
                if len(data) != size:
                    raise cat.error()
            elif header[-1:] in (["missing"], ["ambiguous"]):
                return None
            else:
                raise cat.error()
        except (OSError, ValueError) as exc:
            raise cat.error() from exc
        return oid, kind, data

    def tree(self, oid: str) -> dict[str, _Entry]:
        """The entries of tree `oid`, to edit (a copy). A tree is named by its content, so the
        ones a kept repository made or read before are taken from `Plumbing.trees`: a write
        starts from the trees the one before it made, which otherwise were read back and parsed
        whole (the notes root holds up to 256 fanout directories) on every write."""
        cache = None if self.own else self.plumbing.trees
        if cache is not None and (known := cache.get(oid)) is not None:
            return dict(known)
        found = self.object(oid)
        if found is None or found[1] != "tree":
            raise GitError(f"notes tree {oid} is missing or not a tree", -1, "")
        data = found[2]
        rawsz = len(oid) // 2
        entries: dict[str, _Entry] = {}
        pos = 0
        while pos < len(data):
            space = data.index(b" ", pos)
            nul = data.index(b"\0", space)
            name = data[space + 1 : nul].decode(**_ENCODING)
            entries[name] = _Entry(data[pos:space].decode(), data[nul + 1 : nul + 1 + rawsz].hex())
            pos = nul + 1 + rawsz
        self._remember(oid, entries)
        return dict(entries) if cache is not None else entries

    def _remember(self, oid: str, entries: Mapping[str, _Entry]) -> None:
        if self.own:
            return
        cache = self.plumbing.trees
        if len(cache) >= TREES_KEPT:
            cache.clear()  # bounded; the next writes fill it again with what they touch
        cache[oid] = dict(entries)

    def text(self, oid: str) -> str:
        found = self.object(oid)
        return found[2].decode(**_ENCODING) if found and found[1] == "blob" else ""

    def mktree(self, entries: Mapping[str, _Entry]) -> str:
        """Write a tree of `entries`. A kept repository writes the tree's bytes through its kept
        `hash-object -w -t tree --stdin-paths` (git checks a tree's format before it writes
        it: object-file.c `index_mem`, HASH_FORMAT_CHECK): `mktree` looks up the object of
        every entry it is given, even with --missing (builtin/mktree.c `mktree_line`), which
        for a notes root of 256 fanout directories was most of a write's CPU."""
        # As git writes and reads modes back: octal without leading zeros (mktree.c `write_tree`).
        try:
            canon = {
                name: _Entry(_CANON_MODE.get(e.mode) or f"{int(e.mode, 8):o}", e.oid) for name, e in entries.items()
            }
        except ValueError as exc:  # git reads only octal modes (tree-walk.c `get_mode`): a damaged tree
            raise GitError(f"notes tree entry with a mode git cannot read: {exc}", -1, "") from exc
        if self.own:
            oid = self._mktree(entries)
        else:
            # git's order: a directory sorts as if its name ended in "/" (tree.c `base_name_compare`).
            named = sorted(
                ((name.encode(**_ENCODING), e) for name, e in canon.items()),
                key=lambda item: item[0] + b"/" if item[1].is_tree else item[0],
            )
            path = self.plumbing.scratch() / "tree"
            path.write_bytes(
                b"".join(e.mode.encode() + b" " + name + b"\0" + bytes.fromhex(e.oid) for name, e in named)
            )
            (oid,) = _kept_hash(self.plumbing, "hash-object-tree", ["-t", "tree"], [str(path)])
        self._remember(oid, canon)
        return oid

    def _mktree(self, entries: Mapping[str, _Entry]) -> str:
        # --missing: a subtree made earlier by this same process need not be looked up again.
        mk = self.plumbing.pipe("mktree", ["mktree", "-z", "--missing", "--batch"])
        body = b"".join(
            (_MKTREE_HEAD.get(e.mode) or f"{e.mode.rjust(6, '0')} {e.kind} ".encode())
            + e.oid.encode()
            + b"\t"
            + name.encode(**_ENCODING)
            + b"\0"
            for name, e in entries.items()
        )
        try:
            mk.stdin.write(body + b"\0")
            mk.stdin.flush()
            oid = mk.stdout.readline().decode().strip()
        except OSError as exc:
            raise mk.error() from exc
        if not oid:
            raise mk.error()
        return oid


class _Dir:
    """One directory of the notes tree, loaded only if a note we write lives in or under it."""

    def __init__(self, session: _Session, depth: int, entries: dict[str, _Entry]) -> None:
        self.session = session
        self.depth = depth  # fanout level: names here are the object id minus 2*depth hex digits
        self.entries = entries
        self.children: dict[str, _Dir] = {}
        self.dirty = False

    def child(self, name: str, create: bool = False) -> _Dir | None:
        if name not in self.children:
            entry = self.entries.get(name)
            if entry is not None and entry.is_tree:
                self.children[name] = _Dir(self.session, self.depth + 1, self.session.tree(entry.oid))
            elif entry is None and create:
                self.children[name] = _Dir(self.session, self.depth + 1, {})
            else:
                return None
        return self.children[name]

    def fan_out(self, hexlen: int) -> None:
        """Move this directory's notes one level down when git would (git/git notes.c
        `determine_fanout`): when each of the 16 first hex digits starts at least two notes,
        or a fanout subdirectory. git checks this per level on every write; we check the
        directories we write. git also folds a level back up when the level above it does not
        qualify (`for_each_note_helper` unpacks subtrees at n >= 2 * fanout): a tree another
        tool laid out differently, or one `git notes remove` thinned. We never do; git finds a
        note at any level (`load_subtree`), and its own next write redoes the layout."""
        rest = hexlen - 2 * self.depth
        if rest <= 2:
            return
        names = [n for n, e in self.entries.items() if e.is_file and len(n) == rest and _HEX.fullmatch(n)]
        subdirs = {n[0] for n, e in self.entries.items() if e.is_tree and len(n) == 2 and _HEX.fullmatch(n)}
        subdirs |= {n[0] for n, sub in self.children.items() if sub.entries}
        for digit in "0123456789abcdef":
            if digit not in subdirs and sum(1 for n in names if n[0] == digit) < 2:
                return
        moved: set[str] = set()
        for name in names:
            sub = self.child(name[:2], create=True)
            if sub is None:
                continue  # a file that is not a note holds that name: leave the note where it is
            sub.entries[name[2:]] = self.entries.pop(name)
            sub.dirty = True
            moved.add(name[:2])
        self.dirty = True
        for name in moved:
            self.children[name].fan_out(hexlen)

    def write(self) -> str | None:
        """The oid of this directory as changed (None if it ended up empty)."""
        for name, sub in self.children.items():
            if sub.dirty:
                oid = sub.write()
                if oid is None:
                    self.entries.pop(name, None)
                else:
                    self.entries[name] = _Entry("40000", oid)
        if not self.entries:
            return None
        return self.session.mktree(self.entries)


class _Tree:
    """A notes tree being edited: where git keeps each object's note, and where a new one goes."""

    def __init__(self, session: _Session, root_tree: str | None) -> None:
        self.session = session
        self.root = _Dir(session, 0, session.tree(root_tree) if root_tree else {})

    def _path(self, sha: str) -> list[tuple[_Dir, str]]:
        """Every directory on `sha`'s fanout path that exists, with the name its note would have
        there. git reads a note at any of them (notes.c `load_subtree`), and concatenates two."""
        out: list[tuple[_Dir, str]] = []
        node: _Dir | None = self.root
        depth = 0
        while node is not None:
            out.append((node, sha[2 * depth :]))
            if 2 * depth + 2 >= len(sha):
                break
            node = node.child(sha[2 * depth : 2 * depth + 2])
            depth += 1
        return out

    def read(self, sha: str) -> str:
        """The note as git shows it; two copies at different fanout levels are joined with a
        blank line like notes.c `combine_notes_concatenate`, deeper first: a tree lists `ab/`
        before `abcd…`, and git loads a subtree before it inserts a note that falls inside it."""
        text = ""
        for node, name in reversed(self._path(sha)):
            entry = node.entries.get(name)
            if entry is None or not entry.is_file:
                continue
            part = self.session.text(entry.oid)
            if part and text:
                text = (text[:-1] if text.endswith("\n") else text) + "\n\n" + part
            elif part:
                text = part
        return text

    def put(self, sha: str, blob: str) -> None:
        """Store the note in the deepest existing fanout directory (and nowhere else)."""
        path = self._path(sha)
        for node, name in path:
            if name in node.entries and node.entries[name].is_file:
                del node.entries[name]
                node.dirty = True
        node, name = path[-1]
        node.entries[name] = _Entry("100644", blob)
        for parent, _ in path:
            parent.dirty = True
        node.fan_out(len(sha))

    def write(self) -> str:
        oid = self.root.write()
        return oid if oid is not None else self.session.mktree({})


# --- writing ------------------------------------------------------------------------------

#: The new text of a note given its current text ("" for none), or None to leave it alone.
Edit = Callable[[str], "str | None"]


@dataclass
class Written:
    """What one `write` did."""

    #: Objects whose note the edits changed.
    changed: list[str] = field(default_factory=list)
    #: Objects that got back lines of ours another writer had dropped: {object: lines}.
    restored: dict[str, list[str]] = field(default_factory=dict)
    #: The notes commit made, if anything changed.
    commit: str | None = None
    #: How many times the ref moved under us before the swap succeeded.
    races: int = 0
    #: With `commits_only`: the objects left alone because they are not commits here.
    absent: list[str] = field(default_factory=list)


class _Race(Exception):
    """update-ref found the ref elsewhere than the tip we built on: redo from the new tip."""

    def __init__(self, stderr: str) -> None:
        super().__init__(stderr)
        self.locked = "File exists" in stderr


@dataclass(frozen=True)
class _Commit:
    oid: str
    tree: str
    parent: str | None  # the first parent: the tip this commit replaced
    subject: str


def _commit_of(session: _Session, name: str) -> _Commit | None:
    found = session.object(name)
    if found is None:
        return None
    oid, kind, data = found
    if kind != "commit":
        raise GitError(f"{name} points at a {kind}, not a notes commit", -1, "")
    head, _, message = data.decode(**_ENCODING).partition("\n\n")
    fields = [line.split(" ", 1) for line in head.splitlines()]
    tree = next(value for key, value in fields if key == "tree")
    parent = next((value for key, value in fields if key == "parent"), None)
    return _Commit(oid, tree, parent, message.split("\n", 1)[0])


def written_ref(ref: str) -> str:
    """The private ref that holds our last notes commit on `ref` (a full ref name)."""
    return WRITTEN_PREFIX + ref.removeprefix("refs/")


def drop_written(git_dir: Path) -> list[str]:
    """Delete every private `written_ref` (of any notes ref ever used), for `tracekeeper
    uninstall`: they are tracekeeper's alone, while the notes refs they point into are the
    user's and stay. Losing one is harmless (the next write walks from the tip alone), so no
    compare-and-swap: a daemon writing meanwhile just makes a new one."""
    listed = git.run(git_dir, ["for-each-ref", "--format=%(refname)", WRITTEN_PREFIX]).stdout.decode()
    refs = listed.split()
    if refs:
        git.run(git_dir, ["update-ref", "--stdin"], input="".join(f"delete {ref}\n" for ref in refs).encode())
    return refs


@dataclass(frozen=True)
class _History:
    tip: _Commit | None
    #: Notes commits made since our newest one, newest first (first parents only).
    foreign: list[_Commit]
    #: Our last notes commit on this ref, as the private ref records it (None: never, or made
    #: by a tracekeeper from before that ref): the old value of its compare-and-swap.
    written: str | None
    #: When the tip's history does not contain `written` (someone moved the ref over it without
    #: compare-and-swap), the oldest of `foreign` is compared with it instead of its parent.
    base: str | None = None


def _history(session: _Session, ref: str) -> _History:
    """The ref's tip and the notes commits made since our newest one. Read through the session's
    cat-file, so a tip of ours costs no process.

    Our newest commit is the one the private ref records. Usually the walk back from the tip
    meets it. When the walk meets an older commit of ours, a root commit, or its depth first,
    git tells whether ours is in the tip's history at all (one process, only then): if not, a
    writer without compare-and-swap replaced it, and what it had is the base to compare with.
    """
    tip = _commit_of(session, ref)
    mark = _commit_of(session, written_ref(ref))
    written = mark.oid if mark else None
    foreign: list[_Commit] = []
    commit = tip
    while commit is not None:
        if commit.oid == written:
            return _History(tip, foreign, written)
        if commit.subject.startswith(COMMIT_MESSAGE) or len(foreign) >= REPAIR_DEPTH:
            break
        foreign.append(commit)
        commit = _commit_of(session, commit.parent) if commit.parent else None
    ours = commit is not None and commit.subject.startswith(COMMIT_MESSAGE)
    if tip is None or written is None:
        # No record (or a notes ref deleted on purpose, which stays deleted): a walk that met
        # no commit of ours has nothing we wrote to look after.
        return _History(tip, foreign if ours else [], written)
    if git.is_ancestor(session.git_dir, written, tip.oid):
        if ours or commit is None:
            return _History(tip, foreign if ours else [], written)
        # Ours is in the history, deeper than the walk: every first-parent commit since it.
        names = git.output(session.git_dir, ["rev-list", "--first-parent", tip.oid, f"^{written}"]).split()
        foreign = []
        for name in names:
            found = _commit_of(session, name)
            if found is None or found.subject.startswith(COMMIT_MESSAGE):
                break
            foreign.append(found)
        return _History(tip, foreign, written)
    if _deleted_since(session.git_dir, ref, written):
        return _History(tip, foreign if ours else [], written)  # deleted on purpose, as above
    # Overwritten by a writer without compare-and-swap: compare with what ours had.
    return _History(tip, foreign or [tip], written, base=written)


def _deleted_since(git_dir: Path, ref: str, written: str) -> bool:
    """Whether `ref` was deleted, and made again by someone else, since our commit `written`
    landed on it. The new ref's first commit is a root commit, as a stale append's can be; what
    tells them apart is the ref's reflog (git keeps one for refs/notes/ where there is a work
    tree, core.logAllRefUpdates): our swaps are in it, and a delete takes it along. Without one
    (a bare repository) nobody can tell, and the lost update is assumed, as before."""
    proc = git.run(git_dir, ["log", "--walk-reflogs", "--format=%H", ref, "--"], check=False)
    logged = proc.stdout.decode().split() if proc.returncode == 0 else []
    return bool(logged) and written not in logged


def _changes(git_dir: Path, pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """{commit: raw diff lines against the commit paired with it (its first parent, or the
    base a `_History` names)}, for all of them in one git process (builtin/diff-tree.c
    `stdin_diff_commit` takes the ids after the first on a line as its parents)."""
    if not pairs:
        return {}
    proc = git.run(
        git_dir,
        ["diff-tree", "--stdin", "-r", "--raw", "--no-abbrev", "--no-renames"],
        input="".join(f"{oid} {against}\n" for oid, against in pairs).encode(),
    )
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in proc.stdout.decode(**_ENCODING).splitlines():
        if line.startswith(":"):
            current.append(line)
        elif line.strip():
            current = out.setdefault(line.strip(), [])
    return out


def _by_object(raw: list[str], hexlen: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """({object: note blobs before}, {object: note blobs after}) of raw diff lines; paths that
    are not notes are left out, and a note moved to another fanout level is one object."""
    before: dict[str, list[str]] = {}
    after: dict[str, list[str]] = {}
    for line in raw:
        meta, _, path = line.partition("\t")
        fields = meta.split()
        if len(fields) < 5:
            continue
        obj = path.replace("/", "")
        if len(obj) != hexlen or not _HEX.fullmatch(obj):
            continue  # not a note
        old, new = fields[2], fields[3]
        if set(old) != {"0"}:
            before.setdefault(obj, []).append(old)
        if set(new) != {"0"}:
            after.setdefault(obj, []).append(new)
    return before, after


def _tree_diffs(git_dir: Path, pairs: list[tuple[str, str]]) -> list[list[str]]:
    """Raw diff lines of each (old tree, new tree) pair, in order, in one git process (git
    prints a header line per pair whether or not they differ: builtin/diff-tree.c
    `stdin_diff_trees`)."""
    proc = git.run(
        git_dir,
        ["diff-tree", "--stdin", "-r", "--raw", "--no-abbrev", "--no-renames"],
        input="".join(f"{old} {new}\n" for old, new in pairs).encode(),
    )
    blocks: list[list[str]] = []
    for line in proc.stdout.decode(**_ENCODING).splitlines():
        if line.startswith(":") and blocks:
            blocks[-1].append(line)
        elif line.strip():
            blocks.append([])
    return blocks


def _removed_on_purpose(session: _Session, commit: _Commit, vanished: set[str], hexlen: int) -> set[str]:
    """Which of the notes that vanished in a "Notes removed by ..." commit its author removed.

    git's remove/edit/add/append write back the notes tree they read when they started, minus
    what they remove, on top of wherever the ref is by then (builtin/notes.c `append_edit`
    reads the notes before the editor runs; notes-utils.c `create_notes_commit` takes the ref's
    value at the end as parent). So emptying one note with `git notes edit` while the daemon
    writes also drops the notes the daemon added meanwhile. The tree the author read is the
    one that explains the commit as removals alone, the fewest: the parent's, or an older
    first-parent ancestor's. Notes missing against it were removed on purpose; the others
    vanished only because they were written after the author read the ref. Where both readings
    fit (`git notes remove P Q` just after our commit that added only P), the one with fewer
    removals wins: a note put back by mistake can be removed again (the next removal is read
    against our commit), a link given up by mistake is gone.
    """
    if commit.parent is None:
        return set()  # a root commit: its author read no notes at all, so removed none
    bases: list[_Commit] = []
    name: str | None = commit.parent
    while name and len(bases) < REMOVAL_BASE_DEPTH and (base := _commit_of(session, name)) is not None:
        bases.append(base)
        name = base.parent
    chosen = vanished
    for block in _tree_diffs(session.git_dir, [(base.tree, commit.tree) for base in bases]):
        before, after = _by_object(block, hexlen)
        removed = {obj for obj in before if obj not in after}
        only_removals = all(sorted(blobs) == sorted(before.get(obj, [])) for obj, blobs in after.items())
        if removed and only_removals and len(removed) < len(chosen):
            chosen = removed
    return chosen & vanished


def _lost(session: _Session, history: _History, hexlen: int) -> dict[str, list[str]]:
    """Lines of ours that commits made since our newest one dropped, per object.

    Each commit is compared with its first parent, the tip it replaced; the oldest with our
    overwritten commit instead when the history says so (`_History.base`). A note that a commit
    saying so ("Notes removed by 'git notes remove'", `prune`, an emptied `edit`) removed on
    purpose stays removed (`_removed_on_purpose`).
    """
    lost: dict[str, list[str]] = {}
    foreign = history.foreign
    against: list[str | None] = [c.parent for c in foreign]
    if history.base is not None:
        against[-1] = history.base
    changes = _changes(session.git_dir, [(c.oid, a) for c, a in zip(foreign, against, strict=True) if a])
    for commit in reversed(foreign):  # oldest first, so `lost` keeps note order
        before, after = _by_object(changes.get(commit.oid, []), hexlen)
        vanished = {obj for obj in before if obj not in after}
        on_purpose = (
            _removed_on_purpose(session, commit, vanished, hexlen)
            if vanished and commit.subject.startswith("Notes removed by")
            else set()
        )
        for obj, blobs in before.items():
            if obj in on_purpose:
                continue
            had = [line for blob in blobs for line in trace_lines(session.text(blob))]
            has = {line for blob in after.get(obj, []) for line in session.text(blob).splitlines()}
            for line in had:
                if line not in has and line not in lost.setdefault(obj, []):
                    lost[obj].append(line)
    return {obj: lines for obj, lines in lost.items() if lines}


#: Environment that makes commit-tree write something other than "now" as its dates.
_DATE_ENV = ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE")
#: Chunk of paths written to a kept `hash-object --stdin-paths` before reading its answers:
#: small enough that its answers (one line each) never fill the pipe back while it waits.
_PATHS_AT_ONCE = 256


def _commit(session: _Session, tree: str, parent: str | None) -> str:
    """The notes commit of `tree` on `parent`.

    Without kept processes, and for a kept repository's first commit: `git commit-tree`, one
    process start. Its commit then shows the exact identity and message bytes git writes here;
    when it has nothing beyond tree, parent, author and committer (no `encoding` from
    i18n.commitEncoding, no signature from commit.gpgSign: commit.c `commit_tree_extended`
    writes those fields in that order), the repository's later commits are the same bytes with
    the current time, written by a kept `git hash-object -w -t commit --stdin-paths` (git checks
    the commit's format before it writes it: object-file.c `index_mem`, HASH_FORMAT_CHECK; it
    flushes each answer to a pipe: write-or-die.c `maybe_flush_or_die`). The identity is the
    one git had when the processes started: a change of user.name or user.email reaches notes
    commits when they are restarted (after `plumbing.IDLE` seconds without a write)."""
    kept = None if session.own else session.plumbing
    if kept is not None and kept.commit_like is not None:
        return _hash_commit(kept, tree, parent, kept.commit_like)
    args = ["commit-tree", tree, "-m", COMMIT_MESSAGE, *(["-p", parent] if parent else [])]
    oid = git.run_committing(session.git_dir, args).stdout.decode().strip()
    if kept is not None and not any(key in os.environ for key in _DATE_ENV):
        kept.commit_like = _commit_like(session, oid)
    return oid


def _commit_like(session: _Session, oid: str) -> tuple[bytes, bytes, bytes] | None:
    """(author, committer without their dates, message) of commit-tree's commit `oid`, or None
    when it holds anything else, which commits made without commit-tree would then lack."""
    found = session.object(oid)
    if found is None or found[1] != "commit":
        return None
    head, _, message = found[2].partition(b"\n\n")
    fields = [line.split(b" ", 1) for line in head.split(b"\n")]
    keys = [field[0] for field in fields]
    if keys not in ([b"tree", b"author", b"committer"], [b"tree", b"parent", b"author", b"committer"]):
        return None
    if message != (COMMIT_MESSAGE + "\n").encode() or any(len(field) != 2 for field in fields):
        return None
    author, committer = (field[1].rsplit(b" ", 2) for field in fields[-2:])
    if len(author) != 3 or len(committer) != 3:
        return None
    return author[0], committer[0], message


def _hash_commit(kept: Plumbing, tree: str, parent: str | None, like: tuple[bytes, bytes, bytes]) -> str:
    now = int(time.time())
    offset = (time.localtime(now).tm_gmtoff or 0) // 60  # as git's date.c `local_tzoffset`
    zone = f"{'-' if offset < 0 else '+'}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
    stamp = f" {now} {zone}\n".encode()
    author, committer, message = like
    body = b"".join(
        [
            b"tree " + tree.encode() + b"\n",
            b"parent " + parent.encode() + b"\n" if parent else b"",
            b"author " + author + stamp,
            b"committer " + committer + stamp,
            b"\n",
            message,
        ]
    )
    path = kept.scratch() / "commit"
    path.write_bytes(body)
    (oid,) = _kept_hash(kept, "hash-object-commit", ["-t", "commit"], [str(path)])
    return oid


def _kept_hash(kept: Plumbing, name: str, options: list[str], paths: Sequence[str]) -> list[str]:
    """Object ids of the files at `paths`, written by the repository's kept `hash-object`."""
    pipe = kept.pipe(name, ["hash-object", "-w", *options, "--no-filters", "--stdin-paths"])
    oids: list[str] = []
    try:
        for at in range(0, len(paths), _PATHS_AT_ONCE):
            chunk = paths[at : at + _PATHS_AT_ONCE]
            pipe.stdin.write("".join(f"{path}\n" for path in chunk).encode())
            pipe.stdin.flush()
            for _ in chunk:
                oid = pipe.stdout.readline().decode().strip()
                if not _HEX.fullmatch(oid) or len(oid) not in (40, 64):
                    raise pipe.error()
                oids.append(oid)
    except (OSError, ValueError) as exc:
        raise pipe.error() from exc
    return oids


def _swap(
    git_dir: Path,
    ref: str,
    new: str,
    old: str | None,
    written: str | None,
    *,
    plumbing: Plumbing | None = None,
) -> None:
    """Move `ref` to `new` only if it still is `old` (None = must not exist yet), and our private
    record of it (`written_ref`) from `written` to `new` likewise, in one transaction: both move
    or neither does (git/git builtin/update-ref.c `--stdin`; a zero id = must not exist).

    Through `plumbing`'s kept `update-ref --stdin` when given: `start`, the two updates,
    `prepare` (which takes the locks and checks the old values, or dies) and `commit`, each
    acknowledged by git (builtin/update-ref.c `report_ok`), so one process serves every swap
    of a busy repository; a refused one exits, and the next swap starts another. The whole
    transaction goes in one write, far below PIPE_BUF, so git reads all of it or none; and a
    daemon killed before `commit` leaves git at end of input inside a started transaction,
    which it aborts (builtin/update-ref.c `update_refs_stdin`): the refs move whole or not."""
    zero = "0" * len(new)
    commands = f"update {ref} {new} {old or zero}\nupdate {written_ref(ref)} {new} {written or zero}\n"
    args = ["update-ref", "-m", COMMIT_MESSAGE, "--stdin"]
    if plumbing is None:
        proc = git.run(git_dir, args, input=commands.encode(), check=False, env=git.IN_ENGLISH)
        if proc.returncode == 0:
            return
        stderr = proc.stderr.decode(errors="replace").strip()
        error = GitError(f"git update-ref failed: {(stderr.splitlines() or ['?'])[-1]}", proc.returncode, stderr)
    else:
        pipe = plumbing.pipe("update-ref", args, env=git.IN_ENGLISH)
        try:
            pipe.stdin.write(f"start\n{commands}prepare\ncommit\n".encode())
            pipe.stdin.flush()
            answers = [pipe.stdout.readline() for _ in range(3)]
        except OSError:
            answers = []
        if answers == [b"start: ok\n", b"prepare: ok\n", b"commit: ok\n"]:
            return
        error = pipe.error()
    if "cannot lock ref" in error.stderr:
        raise _Race(error.stderr)
    raise error


def _hash_blobs(git_dir: Path, texts: Sequence[str], scratch: Plumbing | None = None) -> list[str]:
    """Write blobs for `texts` from files in `scratch`'s kept directory (overwritten by the
    next write to the repository) through its kept `hash-object --stdin-paths`, which starts
    nothing per write (git flushes each answer to a pipe: write-or-die.c `maybe_flush_or_die`);
    else in one git process, from a directory made for this write."""
    import tempfile

    if not texts:
        return []
    with contextlib.ExitStack() as stack:
        if scratch is not None:
            tmp = scratch.scratch()
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tracekeeper-notes-")))
        paths = []
        for i, text in enumerate(texts):
            path = tmp / str(i)
            path.write_bytes(text.encode(**_ENCODING))
            paths.append(str(path))
        if scratch is not None:
            return _kept_hash(scratch, "hash-object", [], paths)
        out = git.output(
            git_dir, ["hash-object", "-w", "--no-filters", "--stdin-paths"], input="\n".join(paths).encode()
        )
    oids = out.split()
    if len(oids) != len(texts):
        raise GitError("git hash-object returned the wrong number of objects", -1, out)
    return oids


def _attempt(
    git_dir: Path,
    ref: str,
    edits: Mapping[str, Edit],
    timeout: float,
    commits_only: bool,
    *,
    kept: Plumbing | None,
) -> Written:
    session = _Session(git_dir, timeout, kept)
    try:
        absent: list[str] = []
        if commits_only:  # through the same cat-file: no extra git process per batch
            absent = [sha for sha in edits if (found := session.object(sha)) is None or found[1] != "commit"]
            edits = {sha: edit for sha, edit in edits.items() if sha not in absent}
        history = _history(session, ref)
        head = history.tip
        tip = head.oid if head else None
        tree = _Tree(session, head.tree if head else None)
        hexlen = len(tip) if tip else len(next(iter(edits), "")) or 40
        if any(len(sha) != hexlen for sha in edits):
            raise GitError(f"object ids of the wrong length for this repository ({hexlen} hex digits)", -1, "")
        lost = _lost(session, history, hexlen) if history.foreign else {}
        done = Written(absent=absent)
        texts: dict[str, str] = {}
        for sha in [*lost, *(s for s in edits if s not in lost)]:
            current = tree.read(sha)
            text = current
            if sha in lost and (merged := merge_lines(text, lost[sha])) is not None:
                done.restored[sha] = [line for line in lost[sha] if line in merged.splitlines()]
                text = merged
            if sha in edits and (edited := edits[sha](text)) is not None and edited != text:
                done.changed.append(sha)
                text = edited
            if text != current:
                texts[sha] = text
        done.restored = {sha: lines for sha, lines in done.restored.items() if lines}
        if not texts:
            return done
        blobs = _hash_blobs(git_dir, list(texts.values()), None if session.own else session.plumbing)
        for sha, blob in zip(texts, blobs, strict=True):
            tree.put(sha, blob)
        new_tree = tree.write()
        done.commit = _commit(session, new_tree, tip)
        _swap(git_dir, ref, done.commit, tip, history.written, plumbing=session.plumbing)
        return done
    finally:
        session.close()


def write(
    git_dir: Path,
    ref: str,
    edits: Mapping[str, Edit],
    *,
    attempts: int = 6,
    timeout: float = git.DEFAULT_TIMEOUT,
    commits_only: bool = False,
    plumbing: Plumbing | None = None,
) -> Written:
    """Apply `edits` ({object id: edit}) to the notes of `ref` in one notes commit.

    Each edit gets the note as it is on the tip the commit is built on; if the ref moved before
    the swap, everything is read and built again on the new tip, after a short jittered wait
    (another writer, or a git command holding the ref's lock). Lines of ours that a writer
    without compare-and-swap dropped since our last commit are put back in the same commit.
    Raises TransientError when the ref never held still, GitError for anything else. With
    `commits_only`, an object that is not a commit here gets no note (git would accept one on
    any object; nobody would ever see it) and is listed in `Written.absent`. `plumbing`: the
    caller's kept git processes for this repository (plumbing.Pool), else started per write.
    """
    for sha in edits:
        if len(sha) not in (40, 64) or not _HEX.fullmatch(sha):
            raise GitError(f"not a full object id: {sha!r}", -1, "")
    # Here, not at the top: every reader of notes (`why`, `show`, `log`) imports this module.
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

    races = 0
    try:
        for attempt in Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, _Race)),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
            stop=stop_after_attempt(attempts),
            sleep=_sleep,
            reraise=True,
        ):
            with attempt:
                try:
                    done = _attempt(git_dir, ref, edits, timeout, commits_only, kept=plumbing)
                except _Race:
                    races += 1
                    raise
                done.races = races
                return done
    except _Race as exc:
        if exc.locked:
            raise TransientError(f"notes ref {ref} stayed locked by another git command") from exc
        raise TransientError(f"notes ref {ref} kept changing under us; will try again") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _with(merger: Callable[[str, Iterable[str]], str | None], lines: Iterable[str]) -> Edit:
    wanted = list(lines)
    return lambda text: merger(text, wanted)


def add(
    git_dir: Path,
    ref: str,
    lines: Mapping[str, Iterable[str]],
    *,
    commits_only: bool = False,
    plumbing: Plumbing | None = None,
) -> Written:
    """Give each object's note the lines of `lines` it lacks (one notes commit for all)."""
    edits = {sha: _with(add_missing, new) for sha, new in lines.items()}
    return write(git_dir, ref, edits, commits_only=commits_only, plumbing=plumbing)


def merge(git_dir: Path, ref: str, lines: Mapping[str, Iterable[str]]) -> Written:
    """Like `add`, but a tombstone wins: links of a forgotten URL are dropped (relink)."""
    return write(git_dir, ref, {sha: _with(merge_lines, new) for sha, new in lines.items()})


def repair(git_dir: Path, ref: str, *, plumbing: Plumbing | None = None) -> Written:
    """Put back lines of ours that another writer dropped since our last write; nothing else."""
    return write(git_dir, ref, {}, plumbing=plumbing)


def add_lines(git_dir: Path, ref: str, sha: str, lines: list[str]) -> bool:
    """Give `sha`'s note every line of `lines` it lacks, keeping what concurrent writers add."""
    return bool(add(git_dir, ref, {sha: lines}).changed)


def add_link(git_dir: Path, ref: str, sha: str, link: TraceLink) -> bool:
    """Attach `link` to commit `sha`; True if the note changed."""
    return add_lines(git_dir, ref, sha, link.lines())


def copy(git_dir: Path, ref: str, source: str, target: str) -> bool:
    """Give `target` every line of `source`'s note it lacks (a cherry-pick keeps its trail)."""
    lines = [line for line in read(git_dir, ref, source).splitlines() if line.strip()]
    return add_lines(git_dir, ref, target, lines) if lines else False
