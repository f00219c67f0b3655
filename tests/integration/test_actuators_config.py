"""The config actuator against real git repositories and a real reloading child."""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit
import yaml

from autonomic.errors import TerminalActuatorError
from autonomic.execute.config_file import ConfigActuator, ConfigBinding, ConfigParams, last_change, last_change_at
from autonomic.execute.supervisor import ProcessBinding, Supervisor
from autonomic.protocols import ActuatorContext, Target

FILES = {
    "yaml": ("app.yaml", "server:\n  name: api\n  workers: 50\n"),
    "json": ("app.json", '{"server": {"name": "api", "workers": 50}}\n'),
    "toml": ("app.toml", "# tuned by hand\n[server]\nname = \"api\"\nworkers = 50  # per core\n"),
    "ini": ("app.ini", "[server]\nname = api\nworkers = 50\n"),
}


class WallClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-C", str(repo), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def read_value(path: Path, fmt: str) -> Any:
    text = path.read_text()
    if fmt == "yaml":
        return yaml.safe_load(text)["server"]["workers"]
    if fmt == "json":
        return json.loads(text)["server"]["workers"]
    if fmt == "toml":
        return tomlkit.parse(text)["server"]["workers"]
    parser = configparser.ConfigParser()
    parser.read_string(text)
    return int(parser["server"]["workers"])


def commit_another_file(repo: Path) -> None:
    """A second file in the repository (``other.txt``), committed: where a person's own work goes."""
    (repo / "other.txt").write_text("a\n")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-q", "-m", "another file")


def commit_count(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD"))


def wait_for(cond: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Supervisor]:
    s = Supervisor(tmp_path / "state")
    yield s
    s.stop_all(timeout_s=1.0)


@pytest.fixture
def act(sup: Supervisor, tmp_path: Path) -> ConfigActuator:
    return ConfigActuator(ActuatorContext(clock=WallClock(), state_dir=tmp_path, supervisor=sup))


def make_repo(tmp_path: Path, fmt: str) -> tuple[Path, Target]:
    repo = tmp_path / "repo"
    repo.mkdir()
    name, text = FILES[fmt]
    (repo / name).write_text(text)
    git(repo, "init", "-q")
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", "initial config")
    return repo, Target(service="api", binding=ConfigBinding(repo=str(repo), file=name))


def scale(**kw: Any) -> ConfigParams:
    return ConfigParams.model_validate({"op": "scale", "key": "server.workers", "reload": "none", **kw})


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml", "ini"])
def test_scale_commits_the_new_value_with_the_action_trailer(
    act: ConfigActuator, tmp_path: Path, fmt: str
) -> None:
    repo, t = make_repo(tmp_path, fmt)
    p = scale(factor=1.2)
    snap = act.snapshot(t, p)
    assert snap["old"] in (50, "50")
    assert act.applied(t, p, "act-1", snap) is False
    detail = act.apply(t, p, "act-1", snap)
    assert read_value(repo / FILES[fmt][0], fmt) == 60
    assert detail["old"] in (50, "50") and detail["new"] in (60, "60")
    assert detail["commit"] == git(repo, "rev-parse", "HEAD").strip()
    message = git(repo, "log", "-1", "--format=%B")
    assert "server.workers" in message and "Autonomic-Action: act-1" in message.splitlines()
    assert act.applied(t, p, "act-1", snap) is True
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml", "ini"])
def test_undo_reverts_once_with_the_undo_trailer(act: ConfigActuator, tmp_path: Path, fmt: str) -> None:
    repo, t = make_repo(tmp_path, fmt)
    p = scale(factor=1.2)
    snap = act.snapshot(t, p)
    act.apply(t, p, "act-2", snap)
    undone = act.undo(t, p, "act-2", snap)
    assert read_value(repo / FILES[fmt][0], fmt) == 50
    assert undone["new"] in (50, "50")
    assert "Autonomic-Undo: act-2" in git(repo, "log", "-1", "--format=%B").splitlines()
    count = commit_count(repo)
    assert act.undo(t, p, "act-2", snap)["noop"] is True
    assert commit_count(repo) == count


def test_toml_comments_are_kept(act: ConfigActuator, tmp_path: Path) -> None:
    repo, t = make_repo(tmp_path, "toml")
    p = scale(factor=1.2)
    act.apply(t, p, "act-3", act.snapshot(t, p))
    text = (repo / "app.toml").read_text()
    assert "# tuned by hand" in text and "# per core" in text and "workers = 60" in text


def test_max_clamps_the_scaled_value(act: ConfigActuator, tmp_path: Path) -> None:
    repo, t = make_repo(tmp_path, "yaml")
    p = scale(factor=2, max=80)
    act.apply(t, p, "act-4", act.snapshot(t, p))
    assert read_value(repo / "app.yaml", "yaml") == 80


@pytest.mark.parametrize("fmt", ["yaml", "ini"])
def test_no_effect_names_a_scale_already_at_its_max_and_nothing_else(
    act: ConfigActuator, tmp_path: Path, fmt: str
) -> None:
    """A scale clamped to the value the file holds changes nothing: ``no_effect`` says so (read
    only: no commit); below the max, or with no file to read, it has no objection."""
    repo, t = make_repo(tmp_path, fmt)
    assert act.no_effect(t, scale(factor=1.2, max=200)) is None
    why = act.no_effect(t, scale(factor=1.2, max=50))
    assert why is not None and why.startswith(f"server.workers is {50 if fmt == 'yaml' else '50'!r} in ")
    assert "scaling it by 1.2 (clamped to max 50)" in why and why.endswith("so the action would change nothing")
    assert act.no_effect(t, ConfigParams(op="set", key="server.name", value="api", reload="none")) is not None
    assert act.no_effect(t, ConfigParams(op="set", key="server.name", value="web", reload="none")) is None
    assert act.no_effect(t, ConfigParams(op="revert_last", reload="none")) is None
    assert commit_count(repo) == 1 and git(repo, "status", "--porcelain") == ""
    gone = Target(service="api", binding=ConfigBinding(repo=str(repo), file="missing.yaml"))
    assert act.no_effect(gone, scale(factor=1.2, max=50)) is None  # apply reports the missing file


def test_set_clamps_to_min_and_keeps_other_keys(act: ConfigActuator, tmp_path: Path) -> None:
    repo, t = make_repo(tmp_path, "json")
    p = ConfigParams(op="set", key="server.workers", value=2, min=4, reload="none")
    detail = act.apply(t, p, "act-5", act.snapshot(t, p))
    assert detail["new"] == 4
    assert json.loads((repo / "app.json").read_text()) == {"server": {"name": "api", "workers": 4}}


def test_apply_twice_with_one_key_makes_one_commit(act: ConfigActuator, tmp_path: Path) -> None:
    repo, t = make_repo(tmp_path, "yaml")
    p = scale(factor=1.2)
    snap = act.snapshot(t, p)
    first = act.apply(t, p, "act-6", snap)
    second = act.apply(t, p, "act-6", snap)
    assert second["noop"] is True and second["commit"] == first["commit"]
    assert commit_count(repo) == 2
    assert read_value(repo / "app.yaml", "yaml") == 60


def test_revert_last_reverts_the_latest_change_and_undo_reverts_the_revert(
    act: ConfigActuator, tmp_path: Path
) -> None:
    repo, t = make_repo(tmp_path, "yaml")
    (repo / "app.yaml").write_text("server:\n  name: api\n  workers: 70\n")
    git(repo, "commit", "-q", "-am", "bump workers to 70")
    p = ConfigParams(op="revert_last", key="server.workers", reload="none")
    snap = act.snapshot(t, p)
    detail = act.apply(t, p, "act-7", snap)
    assert detail["old"] == 70 and detail["new"] == 50
    assert read_value(repo / "app.yaml", "yaml") == 50
    assert "Autonomic-Action: act-7" in git(repo, "log", "-1", "--format=%B").splitlines()
    assert act.applied(t, p, "act-7", snap) is True
    assert act.apply(t, p, "act-7", snap)["noop"] is True
    act.undo(t, p, "act-7", snap)
    assert read_value(repo / "app.yaml", "yaml") == 70
    assert commit_count(repo) == 4


def test_missing_key_is_a_terminal_error_naming_file_and_key(act: ConfigActuator, tmp_path: Path) -> None:
    _, t = make_repo(tmp_path, "yaml")
    p = ConfigParams(op="scale", key="server.threads", factor=2)
    with pytest.raises(TerminalActuatorError, match=r"app\.yaml.*server\.threads"):
        act.snapshot(t, p)
    with pytest.raises(TerminalActuatorError, match=r"app\.yaml.*server\.threads"):
        act.apply(t, p, "act-8", {})


def test_scaling_a_string_is_a_terminal_error(act: ConfigActuator, tmp_path: Path) -> None:
    _, t = make_repo(tmp_path, "yaml")
    p = ConfigParams(op="scale", key="server.name", factor=2)
    with pytest.raises(TerminalActuatorError, match="server.name.*not a number"):
        act.apply(t, p, "act-9", {})


def test_reload_signal_is_delivered_to_the_running_service(
    act: ConfigActuator, sup: Supervisor, tmp_path: Path
) -> None:
    _, t = make_repo(tmp_path, "yaml")
    hup, ready = tmp_path / "hup", tmp_path / "ready"
    code = (
        "import signal, time, pathlib\n"
        f"signal.signal(signal.SIGHUP, lambda *a: pathlib.Path({str(hup)!r}).write_text('reloaded'))\n"
        f"pathlib.Path({str(ready)!r}).write_text('')\n"
        "while True:\n    time.sleep(0.05)\n"
    )
    sup.add("api", ProcessBinding(command=[sys.executable, "-c", code]))
    pid = sup.start("api")
    wait_for(ready.exists)
    p = scale(factor=1.2, reload="signal")
    detail = act.apply(t, p, "act-10", act.snapshot(t, p))
    assert detail["reload"] == "sent SIGHUP"
    wait_for(hup.exists)
    assert sup.pid("api") == pid


def test_reload_restart_restarts_the_service(act: ConfigActuator, sup: Supervisor, tmp_path: Path) -> None:
    _, t = make_repo(tmp_path, "yaml")
    sup.add("api", ProcessBinding(command=[sys.executable, "-c", "import time\ntime.sleep(30)"]))
    pid = sup.start("api")
    p = scale(factor=1.2, reload="restart")
    act.apply(t, p, "act-11", act.snapshot(t, p))
    assert sup.pid("api") not in (None, pid)


def test_last_change_counts_only_changes_still_in_effect_made_outside_the_engine(
    act: ConfigActuator, tmp_path: Path
) -> None:
    """The file's first version is not a change, a change that was undone no longer counts, and
    neither does autonomic's own change (its own verification judges it): this keeps "error spike
    after a config change" from matching an undo or reverting the engine's own fix."""
    repo, t = make_repo(tmp_path, "yaml")
    assert isinstance(t.binding, ConfigBinding)
    assert ConfigActuator.last_change_at(t.binding) is None
    p = scale(factor=1.2)
    act.apply(t, p, "act-lc", act.snapshot(t, p))
    assert ConfigActuator.last_change_at(t.binding) is None  # the engine's own
    (repo / "app.yaml").write_text("server:\n  name: api\n  workers: 60\n  timeout: 1\n")
    git(repo, "commit", "-q", "-am", "shorter timeout")
    change = last_change(t.binding)
    assert change is not None and change.commit == git(repo, "rev-parse", "HEAD").strip()
    assert (change.author, change.subject) == ("t <t@localhost>", "shorter timeout")
    assert abs(change.at - time.time()) < 60 and last_change_at(t.binding.model_dump()) == change.at
    git(repo, "revert", "--no-edit", "HEAD")  # the person takes it back
    assert ConfigActuator.last_change_at(t.binding) is None
    other = ConfigBinding(repo=t.binding.repo, file="never.yaml")
    assert act.last_change_at(other) is None


def test_revert_last_reverts_the_last_change_made_outside_the_engine_and_leaves_the_engines_own(
    act: ConfigActuator, tmp_path: Path
) -> None:
    """A person's change, then autonomic's (a pool raised and verified): revert_last takes back
    the person's change, under the engine's, says whose it was, and leaves the engine's in place."""
    repo, t = make_repo(tmp_path, "yaml")
    layout = "server:\n  name: api\n  workers: 50\n  log: info\n  port: 8080\n  host: 0.0.0.0\n  timeout: {}\n"
    (repo / "app.yaml").write_text(layout.format(5))
    git(repo, "commit", "-q", "-am", "timeout setting")
    (repo / "app.yaml").write_text(layout.format(1))
    git(repo, "commit", "-q", "-am", "shorter timeout")
    persons = git(repo, "rev-parse", "HEAD").strip()
    p = scale(factor=1.2)
    act.apply(t, p, "act-own", act.snapshot(t, p))
    revert = ConfigParams(op="revert_last", reload="none")
    snap = act.snapshot(t, revert)
    assert snap["target_commit"] == persons and snap["target"] == f"{persons[:12]} 'shorter timeout' by t <t@localhost>"
    detail = act.apply(t, revert, "act-revert", snap)
    assert detail["reverted"] == persons and "by t <t@localhost>" in detail["reverted_change"]
    server = yaml.safe_load((repo / "app.yaml").read_text())["server"]
    assert (server["workers"], server["timeout"]) == (60, 5)


def test_revert_last_refuses_to_revert_the_first_version_an_undo_or_the_engines_own_change(
    act: ConfigActuator, tmp_path: Path
) -> None:
    repo, t = make_repo(tmp_path, "yaml")
    revert = ConfigParams(op="revert_last", reload="none")
    with pytest.raises(TerminalActuatorError, match="no change"):
        act.apply(t, revert, "act-rl1", act.snapshot(t, revert))
    p = scale(factor=1.2)
    snap = act.snapshot(t, p)
    act.apply(t, p, "act-rl2", snap)
    act.undo(t, p, "act-rl2", snap)
    with pytest.raises(TerminalActuatorError, match="no change"):
        act.apply(t, revert, "act-rl3", act.snapshot(t, revert))
    act.apply(t, p, "act-rl4", act.snapshot(t, p))  # autonomic's own change, verified: not its to revert
    with pytest.raises(TerminalActuatorError, match="no change to app.yaml .* made outside autonomic"):
        act.apply(t, revert, "act-rl5", act.snapshot(t, revert))
    assert read_value(repo / "app.yaml", "yaml") == 60


def test_describe_is_one_line() -> None:
    act = ConfigActuator(ActuatorContext(clock=WallClock(), state_dir=Path("/nonexistent")))
    t = Target(service="api", binding=ConfigBinding(repo="/nonexistent", file="app.yaml"))
    text = act.describe(t, scale(factor=1.2, max=80))
    assert text == "scale server.workers by 1.2 (clamped to max 80) in app.yaml of api, commit, reload: none"


def test_params_and_binding_validation_name_the_field() -> None:
    with pytest.raises(ValueError, match="key is required"):
        ConfigParams(op="set", value=3)
    with pytest.raises(ValueError, match="factor is required"):
        ConfigParams(op="scale", key="a")
    with pytest.raises(ValueError, match="factor"):
        ConfigParams(op="scale", key="a", factor=0)
    with pytest.raises(ValueError, match="format"):
        ConfigBinding(repo="/r", file="app.conf")
    with pytest.raises(ValueError, match="reload_signal"):
        ConfigBinding(repo="/r", file="app.yaml", reload_signal="SIGNOPE")
    ini = ConfigBinding(repo="/r", file="app.conf", format="ini", reload_signal="USR1")
    assert ini.reload_signal == "SIGUSR1"


@pytest.mark.parametrize("link", ["folder", "file"])
def test_a_symlink_in_the_repository_cannot_lead_reads_or_writes_outside_it(
    act: ConfigActuator, tmp_path: Path, link: str
) -> None:
    """A committed symlink (a folder ``conf -> /elsewhere``, or the file itself) would make the
    path of ``file`` name a file outside ``repo``: it is refused before anything is read or written."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "app.yaml").write_text("server:\n  workers: 50\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    if link == "folder":
        (repo / "conf").symlink_to(outside)
        name = "conf/app.yaml"
    else:
        (repo / "app.yaml").symlink_to(outside / "app.yaml")
        name = "app.yaml"
    git(repo, "add", name.split("/")[0])
    git(repo, "commit", "-q", "-m", "initial config")
    t = Target(service="api", binding=ConfigBinding(repo=str(repo), file=name))
    p = scale(factor=2)
    with pytest.raises(TerminalActuatorError, match="outside"):
        act.snapshot(t, p)
    with pytest.raises(TerminalActuatorError, match="outside"):
        act.apply(t, p, "act-link", {})
    assert (outside / "app.yaml").read_text() == "server:\n  workers: 50\n"
    assert [f.name for f in outside.iterdir()] == ["app.yaml"]


def test_a_crash_after_the_commit_still_reloads_and_a_crash_before_it_does_not_scale_twice(
    act: ConfigActuator, tmp_path: Path
) -> None:
    """Crash windows of apply: (1) committed but not reloaded -> applying again commits nothing
    and reloads; (2) written but not committed -> applying again scales from the snapshot, once."""
    repo, t = make_repo(tmp_path, "yaml")
    p = scale(factor=1.2)
    snap = act.snapshot(t, p)
    first = act.apply(t, p, "act-crash", snap)
    again = act.apply(t, p, "act-crash", snap)
    assert again["noop"] is True and again["commit"] == first["commit"] and "reload" in again
    log = git(repo, "log", "--format=%B")
    assert log.count("Autonomic-Action: act-crash") == 1
    # (2): the file already holds 72 (written), but nothing was committed under this key
    snap2 = act.snapshot(t, p)
    assert snap2["old"] == 60
    doc = yaml.safe_load((repo / "app.yaml").read_text())
    doc["server"]["workers"] = 72  # as if the killed engine had written its new value, uncommitted
    (repo / "app.yaml").write_text(yaml.safe_dump(doc))
    detail = act.apply(t, p, "act-crash-2", snap2)
    assert read_value(repo / "app.yaml", "yaml") == 72  # 60 * 1.2 from the snapshot, not 72 * 1.2
    assert detail["commit"] and "reload" in detail  # the write is committed under the key, and reloaded
    assert git(repo, "log", "--format=%B").count("Autonomic-Action: act-crash-2") == 1
    assert not git(repo, "status", "--porcelain").strip()


def test_a_repository_another_git_process_is_using_is_a_retryable_error_naming_the_lock(
        act: ConfigActuator, tmp_path: Path) -> None:
    """.git/index.lock exists (a person committing, or a replica's commit still running after a
    failover): the apply is worth retrying, not a failure of the fix; once the lock is gone it
    goes through. The binding's repo is a folder inside the work tree (one repository for many
    services' configs): the error names the lock where git has it, at the top."""
    from autonomic.errors import RetryableActuatorError

    repo, t = make_repo(tmp_path, "yaml")
    name, text = FILES["yaml"]
    (repo / "api").mkdir()
    (repo / "api" / name).write_text(text)
    git(repo, "add", "api")
    git(repo, "commit", "-q", "-m", "api's own config")
    t = Target(service="api", binding=ConfigBinding(repo=str(repo / "api"), file=name))
    p = scale(factor=1.2)
    snap = act.snapshot(t, p)
    lock = repo / ".git" / "index.lock"
    lock.write_text("")
    with pytest.raises(RetryableActuatorError, match=r"index\.lock exists; if no git process is running") as err:
        act.apply(t, p, "act-lock", snap)
    assert f"({lock.resolve()} exists" in str(err.value)  # where it is, as git says, for the person to remove
    assert commit_count(repo) == 2
    lock.unlink()
    act.apply(t, p, "act-lock", snap)
    assert commit_count(repo) == 3 and act.applied(t, p, "act-lock", snap) is True
    assert read_value(repo / "api" / name, "yaml") == 60 and read_value(repo / name, "yaml") == 50


def test_undo_and_revert_last_leave_a_persons_staged_changes_out_of_their_commit(
        act: ConfigActuator, tmp_path: Path) -> None:
    """A person has staged a change to another file of the repository: the revert commits of an
    undo and of revert_last hold only what they revert, and the person's change stays staged."""
    repo, t = make_repo(tmp_path, "yaml")
    commit_another_file(repo)
    p = scale(factor=1.2)
    snap = act.snapshot(t, p)
    act.apply(t, p, "act-staged", snap)
    (repo / "other.txt").write_text("a person's edit\n")
    git(repo, "add", "other.txt")
    act.undo(t, p, "act-staged", snap)
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["app.yaml"]
    assert git(repo, "status", "--porcelain").splitlines() == ["M  other.txt"]
    (repo / "app.yaml").write_text("server:\n  name: api\n  workers: 70\n")
    git(repo, "commit", "-q", "-m", "workers to 70", "--", "app.yaml")  # a person's change, to revert
    revert = ConfigParams(op="revert_last", reload="none")
    act.apply(t, revert, "act-staged-3", act.snapshot(t, revert))
    assert read_value(repo / "app.yaml", "yaml") == 50
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["app.yaml"]
    assert git(repo, "status", "--porcelain").splitlines() == ["M  other.txt"]
    assert (repo / "other.txt").read_text() == "a person's edit\n"


@pytest.mark.parametrize("fmt", ["yaml", "toml"])
def test_a_persons_uncommitted_edit_of_the_file_is_neither_committed_as_autonomics_nor_lost_by_undo(
        act: ConfigActuator, tmp_path: Path, fmt: str) -> None:
    """The bound file has an edit nobody committed yet: the change is refused (terminal) and the
    edit stays as it was, instead of being committed under the action's key, where an undo would
    revert it away with the action's own change."""
    repo, t = make_repo(tmp_path, fmt)
    name = FILES[fmt][0]
    edited = (repo / name).read_text().replace("api", "api-by-hand")
    (repo / name).write_text(edited)
    p = scale(factor=1.2)
    snap = act.snapshot(t, p)
    with pytest.raises(TerminalActuatorError, match="changes not committed"):
        act.apply(t, p, "act-dirty", snap)
    assert (repo / name).read_text() == edited
    assert commit_count(repo) == 1 and act.applied(t, p, "act-dirty", snap) is False


def test_an_undo_that_does_not_apply_cleanly_leaves_a_persons_staged_work_and_no_revert_in_progress(
        act: ConfigActuator, tmp_path: Path) -> None:
    """The action's line was changed again since (a later commit), so its revert conflicts: the
    undo fails (terminal), the repository is as it was, and the person's staged change to another
    file is still there; ``git revert --abort`` reset the whole index and worktree and threw it away."""
    repo, t = make_repo(tmp_path, "yaml")
    commit_another_file(repo)
    p = scale(factor=1.2)
    snap = act.snapshot(t, p)
    act.apply(t, p, "act-conflict", snap)
    (repo / "app.yaml").write_text("server:\n  name: api\n  workers: 80\n")
    git(repo, "commit", "-q", "-am", "tuned by hand")
    (repo / "other.txt").write_text("a person's edit\n")
    git(repo, "add", "other.txt")
    with pytest.raises(TerminalActuatorError, match="does not apply cleanly"):
        act.undo(t, p, "act-conflict", snap)
    assert (repo / "other.txt").read_text() == "a person's edit\n"
    assert git(repo, "status", "--porcelain").splitlines() == ["M  other.txt"]
    assert (repo / "app.yaml").read_text() == "server:\n  name: api\n  workers: 80\n"
    assert not (repo / ".git" / "REVERT_HEAD").exists()


def test_undo_of_a_change_a_person_already_reverted_is_a_noop_with_no_revert_in_progress(
        act: ConfigActuator, tmp_path: Path) -> None:
    """A person ran ``git revert`` on the action's commit: the state is already the snapshot's, so
    undo succeeds doing nothing; it failed on an empty commit and left the repository mid-revert."""
    repo, t = make_repo(tmp_path, "yaml")
    p = scale(factor=1.2)
    snap = act.snapshot(t, p)
    commit = act.apply(t, p, "act-reverted", snap)["commit"]
    git(repo, "revert", "--no-edit", commit)
    count = commit_count(repo)
    undone = act.undo(t, p, "act-reverted", snap)
    assert undone["noop"] is True and read_value(repo / "app.yaml", "yaml") == 50
    assert commit_count(repo) == count and not (repo / ".git" / "REVERT_HEAD").exists()
    assert git(repo, "status", "--porcelain") == ""


def test_an_undo_retried_after_a_crash_between_its_revert_and_its_commit_commits_that_revert(
        act: ConfigActuator, tmp_path: Path) -> None:
    """An engine killed after ``git revert --no-commit`` and before the commit leaves the file
    holding exactly the revert of the action's commit, staged: the retried undo commits it with
    the undo trailer (as apply commits its own uncommitted write), not refused as a person's edit."""
    repo, t = make_repo(tmp_path, "yaml")
    p = scale(factor=1.2)
    snap = act.snapshot(t, p)
    commit = act.apply(t, p, "act-undo-crash", snap)["commit"]
    git(repo, "revert", "--no-commit", commit)  # as the killed engine's undo left it
    undone = act.undo(t, p, "act-undo-crash", snap)
    assert read_value(repo / "app.yaml", "yaml") == 50 and undone["commit"]
    assert "Autonomic-Undo: act-undo-crash" in git(repo, "log", "-1", "--format=%B").splitlines()
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".git" / "REVERT_HEAD").exists()


def refuse_commits(repo: Path, on: bool = True) -> None:
    """A real ``pre-commit`` hook of the repository that refuses every commit (``on=False``
    removes it): what a team's hook checking its config does to a change it does not like."""
    hook = repo / ".git" / "hooks" / "pre-commit"
    if not on:
        hook.unlink()
        return
    hook.write_text("#!/bin/sh\necho 'pre-commit: config freeze until monday' >&2\nexit 1\n")
    hook.chmod(0o755)


def test_a_change_whose_commit_is_refused_leaves_the_file_as_committed_and_a_retry_commits_it(
        act: ConfigActuator, tmp_path: Path) -> None:
    """The repository's pre-commit hook refuses the commit: the apply fails (terminal, the hook's
    words and that nothing changed in its error) with the file and its index entry as committed.
    Before: the file was left holding the new value, staged but not committed, while the action
    was recorded failed: the service's next reload would read it, and the next action was refused
    as if a person were editing the file."""
    repo, t = make_repo(tmp_path, "yaml")
    refuse_commits(repo)
    p = scale(factor=1.2)
    snap = act.snapshot(t, p)
    with pytest.raises(TerminalActuatorError, match="config freeze until monday.*put back as committed"):
        act.apply(t, p, "act-refused", snap)
    assert read_value(repo / "app.yaml", "yaml") == 50
    assert git(repo, "status", "--porcelain") == "" and commit_count(repo) == 1
    assert act.applied(t, p, "act-refused", snap) is False
    refuse_commits(repo, on=False)
    assert act.apply(t, p, "act-refused", snap)["commit"]
    assert read_value(repo / "app.yaml", "yaml") == 60 and git(repo, "status", "--porcelain") == ""


def test_an_undo_whose_commit_is_refused_leaves_the_fix_in_place_and_no_revert_in_progress(
        act: ConfigActuator, tmp_path: Path) -> None:
    """The hook refuses the undo's commit: the undo fails, and the repository says what the failed
    undo says, the fix in place. Before: the revert was left staged and in progress (REVERT_HEAD),
    the file on disk holding the old value for the service's next reload, while the action was
    escalated as "undo failed"."""
    repo, t = make_repo(tmp_path, "yaml")
    p = scale(factor=1.2)
    snap = act.snapshot(t, p)
    act.apply(t, p, "act-undo-refused", snap)
    refuse_commits(repo)
    with pytest.raises(TerminalActuatorError, match="config freeze until monday.*put back as committed"):
        act.undo(t, p, "act-undo-refused", snap)
    assert read_value(repo / "app.yaml", "yaml") == 60
    assert git(repo, "status", "--porcelain") == "" and not (repo / ".git" / "REVERT_HEAD").exists()
    refuse_commits(repo, on=False)
    assert act.undo(t, p, "act-undo-refused", snap)["commit"]
    assert read_value(repo / "app.yaml", "yaml") == 50 and git(repo, "status", "--porcelain") == ""


def test_a_change_committed_on_a_detached_head_says_a_branch_checkout_drops_it(
        act: ConfigActuator, tmp_path: Path) -> None:
    """A repository checked out at a commit, not a branch (as GitOps tools do): the change is
    committed there all the same (refusing would stop every fix on such hosts), and the action's
    result warns that checking out a branch drops it; on a branch, no warning."""
    repo, t = make_repo(tmp_path, "yaml")
    p = scale(factor=1.2)
    git(repo, "checkout", "-q", "--detach")
    detail = act.apply(t, p, "act-detached", act.snapshot(t, p))
    assert detail["commit"] and commit_count(repo) == 2
    assert detail["warning"].startswith("committed on a detached HEAD (no branch)")
    (tmp_path / "b").mkdir()
    _, t2 = make_repo(tmp_path / "b", "yaml")
    assert "warning" not in act.apply(t2, p, "act-branch", act.snapshot(t2, p))
