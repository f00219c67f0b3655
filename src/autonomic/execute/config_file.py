"""The ``config`` actuator: change one key of a config file kept in git, commit it, reload.

Every change is a git commit made with argv lists (never a shell), whose message says what
changed and why and ends with the trailer ``Autonomic-Action: <idempotency key>``; undo is a
``git revert`` of that commit carrying ``Autonomic-Undo: <key>``. The trailers are how
``applied`` and ``undo`` stay idempotent across engine crashes: git is the journal.

Keys are dotted paths (``server.workers``; list items by index, ``hosts.0``). INI files use
``section.key``. YAML is rewritten with ``safe_dump(sort_keys=False)`` (comments are lost),
TOML with tomlkit (comments and layout kept), JSON with two-space indentation.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import json
import os
import re
import signal as signal_mod
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import tomlkit
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autonomic.errors import ActuatorError, RetryableActuatorError, TerminalActuatorError
from autonomic.model import ConfigChange
from autonomic.protocols import ActuatorContext, Target

Format = Literal["yaml", "json", "toml", "ini"]
_SUFFIXES: dict[str, Format] = {
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".toml": "toml",
    ".ini": "ini",
    ".cfg": "ini",
}
ACTION_TRAILER = "Autonomic-Action"
UNDO_TRAILER = "Autonomic-Undo"
_GIT = ["git", "-c", "user.name=autonomic", "-c", "user.email=autonomic@localhost"]
_GIT += ["-c", "commit.gpgsign=false"]
_GIT_TIMEOUT_S = 60.0  # one git command is killed after this long
_GIT_CALLS = 12  # the most git commands one call runs (an undo by revert)


class ConfigParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    op: Literal["set", "scale", "revert_last"]
    key: str = ""  # dotted path; required for set and scale
    value: Any = None  # set
    factor: float | None = Field(default=None, gt=0)  # scale
    min: float | None = None  # clamp numerics after scaling / setting
    max: float | None = None
    integer: bool = True  # round the scaled result
    reload: Literal["signal", "restart", "none"] = "signal"

    @model_validator(mode="after")
    def _check(self) -> ConfigParams:
        if self.op in ("set", "scale") and not self.key:
            raise ValueError(f"key is required for op {self.op!r}")
        if self.op == "scale" and self.factor is None:
            raise ValueError("factor is required for op 'scale'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        return self


class ConfigBinding(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    repo: str  # path of a git work tree
    file: str  # path relative to repo
    format: Format | None = None  # by suffix when None
    reload_signal: str = "SIGHUP"

    @field_validator("reload_signal")
    @classmethod
    def _signal_name(cls, v: str) -> str:
        name = v if v.startswith("SIG") else f"SIG{v}"
        if name not in signal_mod.Signals.__members__:
            raise ValueError(f"unknown signal {v!r}")
        return name

    @model_validator(mode="after")
    def _format_known(self) -> ConfigBinding:
        if self.format is None and Path(self.file).suffix.lower() not in _SUFFIXES:
            raise ValueError(f"format: cannot tell the format of {self.file!r}; set format")
        if Path(self.file).is_absolute() or ".." in Path(self.file).parts:
            raise ValueError(f"file: {self.file!r} must be a path inside repo")
        return self

    def missing(self) -> list[str]:
        """What this binding names that this host lacks, each as ``field: why`` (warned at the
        engine's start: ``autonomic check`` may run on another machine, so not a config error)."""
        repo = Path(self.repo)
        if not repo.is_dir():
            return [f"repo: {self.repo} does not exist here"]
        if not any((folder / ".git").exists() for folder in (repo, *repo.resolve().parents)):
            return [f"repo: {self.repo} is not in a git work tree here"]  # a folder inside one is (git -C)
        if not (repo / self.file).is_file():
            return [f"file: {self.file} does not exist in {self.repo}"]
        return []

    @property
    def fmt(self) -> Format:
        return self.format or _SUFFIXES[Path(self.file).suffix.lower()]

    @property
    def path(self) -> Path:
        return Path(self.repo) / self.file


class ConfigActuator:
    """Set or scale one key of a config file in a git work tree, or revert its last change.

    The commit message says what changed and how the new value was reached; when the engine
    puts a ``reason`` into the snapshot it is added as ``Why: <reason>``. After a change the
    service is reloaded per ``params.reload`` (signal, restart through the supervisor, none).
    A file whose path leads out of the repository's work tree (or into its ``.git``) through a
    symlink is neither read nor written: TerminalActuatorError. A commit that fails (the
    repository's hook refuses it, another git process holds the index) leaves the file, and its
    index entry, as committed: a failed change or undo leaves no trace for the next reload to read.
    """

    type: ClassVar[str] = "config"
    Params = ConfigParams
    Binding = ConfigBinding

    def __init__(self, ctx: ActuatorContext) -> None:
        self.ctx = ctx

    # --- protocol ------------------------------------------------------------------------

    def describe(self, target: Target, params: BaseModel) -> str:
        p, b = _params(params), _binding(target)
        if p.op == "set":
            change = f"set {p.key} = {p.value!r}"
        elif p.op == "scale":
            change = f"scale {p.key} by {p.factor:g}"
        else:
            change = "revert the last change"
        clamp = _clamp_text(p)
        return f"{change}{clamp} in {b.file} of {target.service}, commit, reload: {p.reload}"

    def call_limit_s(self, target: Target, params: BaseModel) -> float:
        """The longest one call can take: its git commands (up to ``_GIT_CALLS`` of them in one
        call, each killed after ``_GIT_TIMEOUT_S``) and a reload (a signal, or a restart)."""
        return _GIT_CALLS * _GIT_TIMEOUT_S + 15.0

    def snapshot(self, target: Target, params: BaseModel) -> dict[str, Any]:
        p, b = _params(params), _binding(target)
        head = _git(b, "rev-parse", "HEAD").strip()
        snap: dict[str, Any] = {"file": str(b.path), "key": p.key, "head": head, "old": None}
        if p.key:
            snap["old"] = _jsonable(_get(_load(b)[1], p.key, b))
        if p.op == "revert_last":
            change = last_change(b)
            snap["target_commit"] = change.commit if change else None
            if change is not None:
                snap["target"] = change.describe()
        return snap

    def applied(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> bool | None:
        return _find_commit(_binding(target), ACTION_TRAILER, key) is not None

    def apply(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        p, b = _params(params), _binding(target)
        done = _find_commit(b, ACTION_TRAILER, key)
        if done is not None:
            # Committed before (say, by an engine that was killed right after): the commit is not
            # repeated, but the reload, which may not have happened, is (reloading twice is harmless).
            return {"file": b.file, "key": p.key, "noop": True, "reason": "already applied", "commit": done,
                    "reload": self._reload(target, p, b)}
        if p.op == "revert_last":
            return self._revert_last(target, p, b, key, snapshot)
        fmt, doc = _load(b)
        old = _get(doc, p.key, b)
        # The new value comes from the snapshot's old value when there is one, so a file written
        # but not committed before a crash is not scaled a second time.
        base = snapshot.get("old", old) if p.key and snapshot.get("key") == p.key else old
        new = _new_value(p, base, b)
        detail: dict[str, Any] = {"file": b.file, "key": p.key, "old": _jsonable(base), "new": new}
        if _jsonable(base) == new:
            return {**detail, "commit": None, "noop": True, "reason": "value unchanged"}
        if _dirty(b) and not _holds_only(b, p.key, new):
            # a person's edit not yet committed: committing it under this action's key would
            # take it as autonomic's, and an undo (a revert of that commit) would throw it away
            raise TerminalActuatorError(f"config file {b.file} in {b.repo} has changes not committed "
                                        "(someone is editing it); not changed, commit or discard them first")
        if _jsonable(old) != new:
            _set(doc, p.key, new, b)
            _write_atomic(_checked_path(b), _dump(fmt, doc))
        elif not _dirty(b):
            # the file already holds the new value and nothing is left to commit: somebody else
            # committed it; still reload, so the service runs with it
            return {**detail, "commit": None, "noop": True, "reason": "already committed by someone else",
                    "reload": self._reload(target, p, b)}
        # (when the file holds the new value uncommitted, an engine was killed between the write
        # and the commit: commit it now, with this action's key, and reload)
        what = f"{p.op} {p.key} in {b.file}: {_jsonable(base)!r} -> {new!r}"
        why = _why(p, snapshot)
        try:
            detail["commit"] = _commit(b, f"autonomic: {what}\n\n{why}\n\n{ACTION_TRAILER}: {key}")
        except ActuatorError as exc:
            raise _put_back(b, key, exc) from exc
        if not _git(b, "symbolic-ref", "-q", "HEAD", check=False).strip():  # a GitOps checkout, say
            detail["warning"] = ("committed on a detached HEAD (no branch): checking out a branch there drops "
                                 "this change; push or cherry-pick it to keep it")
        detail["reload"] = self._reload(target, p, b)
        return detail

    def undo(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        p, b = _params(params), _binding(target)
        undone = _find_commit(b, UNDO_TRAILER, key)
        if undone is not None:
            return {"file": b.file, "key": p.key, "noop": True, "reason": "already undone", "commit": undone}
        ours = _find_commit(b, ACTION_TRAILER, key)
        if ours is None:
            return {"file": b.file, "key": p.key, "undo": "nothing to undo (never applied)"}
        before = _jsonable(_get(_load(b)[1], p.key, b)) if p.key else None
        sha = _revert(b, ours, f"{UNDO_TRAILER}: {key}", "autonomic: undo")
        if sha is None:
            return {"file": b.file, "key": p.key, "noop": True, "reason": "already undone by someone else",
                    "commit": None, "reload": self._reload(target, p, b)}
        after = _jsonable(_get(_load(b)[1], p.key, b)) if p.key else None
        detail = {"file": b.file, "key": p.key, "old": before, "new": after, "commit": sha}
        detail["reload"] = self._reload(target, p, b)
        return detail

    def no_effect(self, target: Target, params: BaseModel) -> str | None:
        """Why carrying out ``params`` on ``target`` now would change nothing, or None: a ``set``
        or ``scale`` whose new value is the one the file holds already (a pool at the scale's
        ``max``: raising it again is no remedy). Read-only, the file alone (no git command: it is
        asked while diagnosing, in the engine's loop); None when the file cannot be read (``apply``
        then reports why)."""
        p, b = _params(params), _binding(target)
        if p.op == "revert_last":
            return None
        try:
            old = _jsonable(_get(_load(b)[1], p.key, b))
            new = _new_value(p, old, b)
        except TerminalActuatorError:
            return None
        if old != new:
            return None
        how = f"scaling it by {p.factor:g}{_clamp_text(p)}" if p.op == "scale" else f"setting it{_clamp_text(p)}"
        return f"{p.key} is {old!r} in {b.file} already: {how} leaves it {new!r}, so the action would change nothing"

    @staticmethod
    def last_change_at(binding: BaseModel) -> float | None:
        """Epoch seconds of the latest change to the bound file still in effect made outside the
        engine (see :func:`last_change`); None when there is none."""
        return last_change_at(binding)

    # --- internals -----------------------------------------------------------------------

    def _revert_last(
        self, target: Target, p: ConfigParams, b: ConfigBinding, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        change = None if snapshot.get("target_commit") else last_change(b)
        sha = snapshot.get("target_commit") or (change.commit if change else None)
        if not sha:
            raise TerminalActuatorError(f"revert_last: no change to {b.file} in {b.repo} made outside autonomic is in "
                                        "effect (only its first version, autonomic's own changes, which their own "
                                        "verification judges, or changes already reverted)")
        before = _jsonable(_get(_load(b)[1], p.key, b)) if p.key else None
        new_sha = _revert(b, str(sha), f"{ACTION_TRAILER}: {key}", "autonomic: revert_last")
        if new_sha is None:
            raise TerminalActuatorError(f"revert_last: the change {str(sha)[:12]} to {b.file} is undone already "
                                        "(reverted by hand)")
        after = _jsonable(_get(_load(b)[1], p.key, b)) if p.key else None
        detail: dict[str, Any] = {"file": b.file, "key": p.key, "old": before, "new": after}
        detail.update(commit=new_sha, reverted=sha)
        what = snapshot.get("target") or (change.describe() if change else None)
        if what:
            detail["reverted_change"] = what
        detail["reload"] = self._reload(target, p, b)
        return detail

    def _reload(self, target: Target, p: ConfigParams, b: ConfigBinding) -> str:
        if p.reload == "none":
            return "none"
        sup = self.ctx.supervisor
        if sup is None or target.service not in sup.services():
            return "no supervised process"
        if p.reload == "restart":
            sup.stop(target.service)
            return f"restarted (pid {sup.start(target.service)})"
        sent = sup.signal(target.service, int(signal_mod.Signals[b.reload_signal]))
        return f"sent {b.reload_signal}" if sent else "not running"


def last_change(binding: BaseModel | Mapping[str, Any]) -> ConfigChange | None:
    """The latest change to the bound file still in effect that was made outside the engine
    (reverted pairs, the root commit and autonomic's own commits do not count); None when there is
    none. The engine measures patterns' ``after_change_s`` from it, and ``revert_last`` reverts
    it: an earlier action of autonomic's is judged by its own verification (and undone by its own
    rollback), never reverted as "the last config change" because errors rose after it."""
    b = binding if isinstance(binding, ConfigBinding) else ConfigBinding.model_validate(
        binding.model_dump() if isinstance(binding, BaseModel) else binding)
    return next((c for c, ours in _changes_in_effect(b) if not ours), None)


def last_change_at(binding: BaseModel | Mapping[str, Any]) -> float | None:
    """Epoch seconds of :func:`last_change`; None when there is none."""
    change = last_change(binding)
    return change.at if change else None


# --- params helpers --------------------------------------------------------------------------


def _params(params: BaseModel) -> ConfigParams:
    return params if isinstance(params, ConfigParams) else ConfigParams.model_validate(params)


def _binding(target: Target) -> ConfigBinding:
    b = target.binding
    if isinstance(b, ConfigBinding):
        return b
    if b is None:
        raise TerminalActuatorError(f"service {target.service!r} has no config binding")
    return ConfigBinding.model_validate(b.model_dump())


def _clamp_text(p: ConfigParams) -> str:
    bounds = [f"min {p.min:g}" if p.min is not None else "", f"max {p.max:g}" if p.max is not None else ""]
    bounds = [x for x in bounds if x]
    return f" (clamped to {', '.join(bounds)})" if bounds else ""


def _why(p: ConfigParams, snapshot: Mapping[str, Any]) -> str:
    reason = snapshot.get("reason")
    lines = [f"Why: {reason}"] if reason else []
    if p.op == "scale":
        lines.append(f"Scaled by {p.factor:g}{_clamp_text(p)}{', rounded' if p.integer else ''}.")
    elif p.op == "set":
        lines.append(f"Set by an autonomic remediation{_clamp_text(p)}.")
    return "\n".join(lines)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _new_value(p: ConfigParams, old: Any, b: ConfigBinding) -> Any:
    old = _jsonable(old)
    if p.op == "set":
        new = p.value
        if _is_number(new):
            new = _clamp(float(new), p)
            new = int(new) if isinstance(p.value, int) and float(new).is_integer() else new
        return str(new) if b.fmt == "ini" and new is not None else new
    number = old
    if isinstance(old, str):
        with contextlib.suppress(ValueError):
            number = float(old)
    if not _is_number(number):
        raise TerminalActuatorError(f"{b.file}: key {p.key!r} is {old!r}, not a number; cannot scale")
    assert p.factor is not None
    scaled = _clamp(float(number) * p.factor, p)
    result: int | float = int(round(scaled)) if p.integer else scaled
    return str(result) if b.fmt == "ini" else result


def _clamp(x: float, p: ConfigParams) -> float:
    if p.min is not None:
        x = max(x, p.min)
    if p.max is not None:
        x = min(x, p.max)
    return x


# --- file formats ----------------------------------------------------------------------------


def _checked_path(b: ConfigBinding) -> Path:
    """The bound file's path, once it is known to name a file of the repository's work tree with
    every symlink followed: a committed symlink (of a folder on the way, or of the file itself)
    could otherwise lead reads and writes outside the repository, or into its ``.git``.
    TerminalActuatorError, before anything is read or written, when it does not."""
    repo = Path(b.repo).resolve()
    real = b.path.resolve()
    if not real.is_relative_to(repo) or ".git" in real.relative_to(repo).parts:
        raise TerminalActuatorError(f"config file {b.file} leads outside the work tree of {b.repo} "
                                    f"(through a symlink, to {real}); not read or written")
    return b.path


def _load(b: ConfigBinding) -> tuple[Format, Any]:
    path = _checked_path(b)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TerminalActuatorError(f"cannot read config file {b.path}: {exc}") from exc
    return _parse(b, text)


def _parse(b: ConfigBinding, text: str) -> tuple[Format, Any]:
    fmt = b.fmt
    try:
        if fmt == "yaml":
            return fmt, yaml.safe_load(text)
        if fmt == "json":
            return fmt, json.loads(text)
        if fmt == "toml":
            return fmt, tomlkit.parse(text)
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(text, source=str(b.path))
        return fmt, parser
    except Exception as exc:  # each parser has its own error types
        raise TerminalActuatorError(f"cannot parse config file {b.path} as {fmt}: {exc}") from exc


def _dump(fmt: Format, doc: Any) -> str:
    if fmt == "yaml":
        return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "toml":
        return tomlkit.dumps(doc)
    out = io.StringIO()
    doc.write(out)
    return out.getvalue()


def _missing(b: ConfigBinding, key: str) -> TerminalActuatorError:
    return TerminalActuatorError(f"config file {b.file}: key {key!r} not found")


def _walk(doc: Any, key: str, b: ConfigBinding) -> tuple[Any, str | int]:
    """The container holding the last segment of ``key``, and that segment."""
    parts = key.split(".")
    node = doc
    for part in parts[:-1]:
        node = _child(node, part, b, key)
    last: str | int = parts[-1]
    if isinstance(node, list):
        last = _index(node, parts[-1], b, key)
    elif not isinstance(node, Mapping) or last not in node:
        raise _missing(b, key)
    return node, last


def _index(node: list[Any], part: str, b: ConfigBinding, key: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise _missing(b, key)
    return int(part)


def _child(node: Any, part: str, b: ConfigBinding, key: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, b, key)]
    if isinstance(node, Mapping) and part in node:
        return node[part]
    raise _missing(b, key)


def _get(doc: Any, key: str, b: ConfigBinding) -> Any:
    if isinstance(doc, configparser.ConfigParser):
        section, _, option = key.rpartition(".")
        if not section or not doc.has_option(section, option):
            raise _missing(b, key)
        return doc.get(section, option)
    node, last = _walk(doc, key, b)
    return node[last]


def _set(doc: Any, key: str, value: Any, b: ConfigBinding) -> None:
    if isinstance(doc, configparser.ConfigParser):
        section, _, option = key.rpartition(".")
        doc.set(section, option, str(value))
        return
    node, last = _walk(doc, key, b)
    node[last] = value


def _jsonable(v: Any) -> Any:
    """Plain JSON-ready value (tomlkit items unwrapped; dates and the like as strings)."""
    if hasattr(v, "unwrap"):
        v = v.unwrap()
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return str(v)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# --- git -------------------------------------------------------------------------------------


def _git(b: ConfigBinding, *args: str, check: bool = True) -> str:
    try:
        proc = subprocess.run(
            [*_GIT, "-C", b.repo, *args], capture_output=True, text=True, check=False, timeout=_GIT_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TerminalActuatorError(f"git {args[0]} in {b.repo} failed: {exc}") from exc
    if check and proc.returncode != 0:
        err = proc.stderr.strip()
        if "index.lock" in err and "File exists" in err:
            # another git process is at work in the repository (a person, or an engine replica's
            # commit still running after a failover): worth trying again in a moment
            named = re.search(r"'([^']*index\.lock)'", err)  # git names it: the top of the work tree's
            raise RetryableActuatorError(
                f"git {args[0]} in {b.repo}: another git process is using the repository "
                f"({named.group(1) if named else b.repo + '/.git/index.lock'} exists; if no git process is "
                "running, one that died left it: remove it)")
        raise TerminalActuatorError(f"git {' '.join(args[:2])} in {b.repo} failed ({proc.returncode}): {err[:500]}")
    return proc.stdout


def _dirty(b: ConfigBinding) -> bool:
    """Whether the bound file has changes not yet committed."""
    return bool(_git(b, "status", "--porcelain", "--", b.file).strip())


def _holds_only(b: ConfigBinding, key: str, value: Any) -> bool:
    """Whether the bound file differs from its committed version by exactly ``key`` set to
    ``value`` as this actuator writes it (what an engine killed between its write and its
    commit leaves behind), and by nothing else."""
    committed = _git(b, "show", f"HEAD:./{b.file}", check=False)
    try:
        fmt, doc = _parse(b, committed)
        _set(doc, key, value, b)
        return _dump(fmt, doc) == _checked_path(b).read_text()
    except (TerminalActuatorError, OSError):
        return False


def _holds_revert(b: ConfigBinding, sha: str, paths: list[str]) -> bool:
    """Whether ``paths`` differ from HEAD by exactly the revert of ``sha``, staged, and by nothing
    else (what an engine killed between ``git revert --no-commit`` and its commit leaves behind)."""
    def changed_lines(diff: str) -> list[str]:
        return [line for line in diff.splitlines() if line.startswith(("+", "-"))]

    if _git(b, "diff", "--name-only", "--", *paths).strip():  # not staged: a person's edit
        return False
    staged = _git(b, "diff", "-U0", "--cached", "HEAD", "--", *paths)
    return changed_lines(staged) == changed_lines(_git(b, "diff", "-U0", sha, f"{sha}^", "--", *paths))


def _commit(b: ConfigBinding, message: str) -> str:
    _git(b, "add", "--", b.file)
    _git(b, "commit", "-q", "-m", message, "--", b.file)
    return _git(b, "rev-parse", "HEAD").strip()


def _put_back(b: ConfigBinding, key: str, exc: ActuatorError) -> ActuatorError:
    """After a commit of the file that failed (a hook refused it, another git process holds the
    index, ...): the file, and its entry in the index, put back as committed, so a failed action
    leaves no change of its behind for the service to read at its next reload, nor one the next
    action takes for a person's edit. The file held its committed text or this action's change
    (checked before it was written). Not when the commit was made after all (a git command
    killed at its timeout). ``exc`` (its class kept: a retry writes and commits again), saying so."""
    if _find_commit(b, ACTION_TRAILER, key) is not None:
        return exc
    try:
        committed = _git(b, "show", f"HEAD:./{b.file}")
        _git(b, "reset", "-q", "HEAD", "--", b.file, check=False)  # unstaged (without the lock: stays staged)
        _write_atomic(_checked_path(b), committed)
    except (ActuatorError, OSError) as failed:
        return type(exc)(f"{exc}; and {b.file} could not be put back as committed ({failed}): it holds this "
                         "action's change, not committed")
    return type(exc)(f"{exc}; {b.file} was put back as committed (nothing changed)")


def _changes_in_effect(b: ConfigBinding) -> list[tuple[ConfigChange, bool]]:
    """Commits touching the file that are still in effect, newest first, each with whether it is
    the engine's own (its message carries the ``Autonomic-Action`` trailer).

    A revert and the commit it reverts cancel out (neither is "the last change"), and the
    root commit is the file's first version, not a change. So after autonomic undoes its
    own change, "the last change" is whatever came before it, never the undo itself.
    """
    out = _git(b, "log", "--format=%x1e%H%x1f%ct%x1f%P%x1f%an <%ae>%x1f%s%n%B", "--", b.file, check=False)
    cancelled: set[str] = set()
    effective: list[tuple[ConfigChange, bool]] = []
    for entry in out.split("\x1e"):
        head, _, body = entry.strip().partition("\n")
        if not head:
            continue
        sha, ct, parents, author, subject = (head.split("\x1f") + ["", "", "", ""])[:5]
        if any(sha.startswith(c) for c in cancelled):
            continue  # reverted later: its own effect (a change, or a revert) is gone
        reverted = re.findall(r"This reverts commit ([0-9a-f]{7,40})", body)
        if reverted:
            cancelled.update(reverted)
            continue
        if parents.strip():
            ours = any(line.startswith(f"{ACTION_TRAILER}:") for line in body.splitlines())
            effective.append((ConfigChange(commit=sha, at=float(ct), author=author, subject=subject), ours))
    return effective


def _find_commit(b: ConfigBinding, trailer: str, key: str) -> str | None:
    """The newest commit touching the file whose message has the line ``<trailer>: <key>``."""
    wanted = f"{trailer}: {key}"
    out = _git(b, "log", "--format=%x1e%H%n%B", "--", b.file, check=False)
    for entry in out.split("\x1e"):
        sha, _, body = entry.strip().partition("\n")
        if sha and any(line.strip() == wanted for line in body.splitlines()):
            return sha
    return None


def _revert(b: ConfigBinding, sha: str, trailer_line: str, prefix: str) -> str | None:
    """``git revert`` ``sha`` as one new commit whose message carries ``trailer_line``; None, with
    nothing committed, when its change is undone already (a person reverted it by hand).

    Only the paths ``sha`` touched are reverted, committed and, when the revert does not apply
    cleanly, put back: whatever else a person has staged or edited in the repository is theirs,
    never swept into this commit nor thrown away (``git revert --abort`` resets the whole index).
    Those paths must have no changes not committed (TerminalActuatorError)."""
    subject = _git(b, "log", "-1", "--format=%s", sha).strip()
    touched = _git(b, "diff-tree", "--root", "--no-commit-id", "--name-only", "-r", "-z", sha)
    paths = [x for x in touched.split("\0") if x]
    if not _git(b, "status", "--porcelain", "--", *paths).strip():
        try:
            _git(b, "revert", "--no-commit", sha)
        except TerminalActuatorError:
            _undo_revert(b, paths)
            raise TerminalActuatorError(f"git revert of {sha[:12]} in {b.repo} does not apply cleanly") from None
    elif not _holds_revert(b, sha, paths):  # else an engine killed before its commit staged it: commit it
        raise TerminalActuatorError(f"{', '.join(paths)} in {b.repo} has changes not committed (someone is "
                                    f"editing it); not reverting {sha[:12]} over them")
    if not _git(b, "diff", "--cached", "--name-only", "HEAD", "--", *paths).strip():
        _git(b, "revert", "--quit", check=False)
        return None
    message = f'{prefix}: Revert "{subject}"\n\nThis reverts commit {sha}.\n\n{trailer_line}'
    try:
        _git(b, "commit", "-q", "-m", message, "--", *paths)
    except ActuatorError as exc:
        # refused (a hook, the index held): the revert is not left staged and in progress, the
        # files reverted on disk for the service's next reload while the undo is reported failed
        if _find_commit(b, *trailer_line.split(": ", 1)) is not None:
            raise  # made after all (a git command killed at its timeout)
        _undo_revert(b, paths)
        raise type(exc)(f"{exc}; {', '.join(paths)} put back as committed (nothing reverted)") from exc
    return _git(b, "rev-parse", "HEAD").strip()


def _undo_revert(b: ConfigBinding, paths: list[str]) -> None:
    """``paths`` (staged and on disk) as HEAD has them, and no revert in progress."""
    _git(b, "reset", "-q", "HEAD", "--", *paths, check=False)
    _git(b, "checkout", "-q", "HEAD", "--", *paths, check=False)
    _git(b, "revert", "--quit", check=False)
