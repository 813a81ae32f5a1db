"""Every Dockerfile against what its base image already holds (images/base-images.yaml, facts with sources).

No Docker engine is needed: the user and group commands of each stage's RUN steps are replayed,
in order, against the base's /etc/passwd and /etc/group as shadow-utils would run them (exit codes
from its man pages: groupadd(8), useradd(8), usermod(8), groupmod(8)), so a ``groupadd --gid 1000``
on a base that already has group 1000 fails here as it fails ``docker build`` (exit 4). The final
stage's ``USER`` must name an existing user and group, ``HOME`` must be that user's home, every
``apt-get`` must run on a base that has it, and every ``python``/``pip`` on a stage that has Python
at the version the package requires.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_images import DOCKERFILES, IMAGES, ROOT, Instruction, arg_defaults, instructions, stages

from r1ov.k8s import bundle

FACTS: dict[str, dict[str, Any]] = yaml.safe_load((IMAGES / "base-images.yaml").read_text())
KINDS = pytest.mark.parametrize("kind", sorted(DOCKERFILES), ids=lambda kind: f"Dockerfile.{kind}")
_USER_TOOLS = ("groupadd", "useradd", "usermod", "groupmod", "userdel", "groupdel")


class ShadowError(Exception):
    """A user/group command that would exit non-zero; ``code`` is shadow-utils' exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} (exit {code})")
        self.code = code


@dataclass
class Image:
    """The parts of an image's state the checks read."""

    users: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # name -> (uid, gid, home)
    groups: dict[str, int] = field(default_factory=dict)
    python: str | None = None
    package_manager: str | None = None

    @classmethod
    def from_facts(cls, facts: dict[str, Any]) -> Image:
        return cls(
            users={name: (uid, gid, home) for name, (uid, gid, home) in (facts.get("users") or {}).items()},
            groups=dict(facts.get("groups") or {}),
            python=facts.get("python"),
            package_manager=facts.get("package_manager"),
        )

    # ------------------------------------------------------------- shadow-utils, as far as used

    def _group(self, spec: str) -> int:
        if spec.isdigit() and int(spec) in self.groups.values():
            return int(spec)
        if spec in self.groups:
            return self.groups[spec]
        raise ShadowError(6, f"group '{spec}' does not exist")

    def run(self, argv: list[str]) -> None:
        tool, args = argv[0], argv[1:]
        opts, positional = _options(args)
        if tool == "groupadd":
            (name,) = positional
            if name in self.groups:
                raise ShadowError(9, f"groupadd: group '{name}' already exists")
            gid = int(opts.get("gid", max([999, *self.groups.values()]) + 1))
            if gid in self.groups.values():
                raise ShadowError(4, f"groupadd: GID '{gid}' already exists")
            self.groups[name] = gid
        elif tool == "useradd":
            (name,) = positional
            if name in self.users:
                raise ShadowError(9, f"useradd: user '{name}' already exists")
            uid = int(opts.get("uid", max([999, *(u for u, _, _ in self.users.values())]) + 1))
            if uid in (u for u, _, _ in self.users.values()):
                raise ShadowError(4, f"useradd: UID {uid} is not unique")
            self.users[name] = (
                uid,
                self._group(opts["gid"]) if "gid" in opts else uid,
                opts.get("home", f"/home/{name}"),
            )
        elif tool == "usermod":
            (name,) = positional
            if name not in self.users:
                raise ShadowError(6, f"usermod: user '{name}' does not exist")
            uid, gid, home = self.users.pop(name)
            new = opts.get("login", name)
            if new in self.users:
                raise ShadowError(9, f"usermod: user '{new}' already exists")
            self.users[new] = (int(opts.get("uid", uid)), self._group(opts["gid"]) if "gid" in opts else gid,
                               opts.get("home", home))  # fmt: skip
        elif tool == "groupmod":
            (name,) = positional
            if name not in self.groups:
                raise ShadowError(6, f"groupmod: group '{name}' does not exist")
            gid = self.groups.pop(name)
            new = opts.get("new-name", name)
            if new in self.groups:
                raise ShadowError(9, f"groupmod: group '{new}' already exists")
            self.groups[new] = int(opts.get("gid", gid))
        elif tool == "userdel":
            (name,) = positional
            if self.users.pop(name, None) is None:
                raise ShadowError(6, f"userdel: user '{name}' does not exist")
        elif tool == "groupdel":
            (name,) = positional
            if self.groups.pop(name, None) is None:
                raise ShadowError(6, f"groupdel: group '{name}' does not exist")


# Long and short spellings of the options the Dockerfiles use (shadow-utils' man pages).
_ALIASES = {"g": "gid", "u": "uid", "d": "home", "l": "login", "n": "new-name", "s": "shell", "m": "create-home",
            "M": "no-create-home", "r": "system"}  # fmt: skip
_FLAGS = {"create-home", "no-create-home", "system", "move-home", "no-log-init", "remove", "force"}


def _options(args: list[str]) -> tuple[dict[str, str], list[str]]:
    opts: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            name = arg.lstrip("-")
            name, _, inline = name.partition("=")
            name = _ALIASES.get(name, name)
            if name in _FLAGS:
                opts[name] = "1"
            elif inline:
                opts[name] = inline
            else:
                opts[name] = args[i + 1]
                i += 1
        else:
            positional.append(arg)
        i += 1
    return opts, positional


def _commands(run: str) -> list[list[str]]:
    """The simple commands of a RUN line, split on ``&&``, ``||`` and ``;``."""
    tokens = shlex.split(run.removeprefix("[").removesuffix("]"), posix=True)
    out, current = [], []
    for token in tokens:
        if token in ("&&", "||", ";"):
            out.append(current)
            current = []
        elif token.endswith(";") and token != ";":
            current.append(token[:-1])
            out.append(current)
            current = []
        else:
            current.append(token)
    return [c for c in [*out, current] if c]


def _base_facts(image: str, built: dict[str, Image]) -> Image:
    """The facts of a FROM image: a stage built earlier in the file, one of our own images, or the table."""
    if image in built:
        return _copy(built[image])
    ours = {bundle.image(kind).rpartition(":")[0]: kind for kind in DOCKERFILES}
    name = image.partition("@")[0].rpartition(":")[0] or image
    if name in ours:
        return final_state(ours[name])
    assert name in FACTS, f"{image}: no facts in images/base-images.yaml; add its users, Python and package manager"
    return Image.from_facts(FACTS[name])


def _copy(image: Image) -> Image:
    return Image(dict(image.users), dict(image.groups), image.python, image.package_manager)


def _resolve(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)


def replay(kind: str) -> list[tuple[str | None, Image, list[Instruction]]]:
    """(stage alias, state after its steps, steps) for every stage; raises ShadowError like the build."""
    groups = stages(instructions(DOCKERFILES[kind]))
    args = arg_defaults(groups[0])
    built: dict[str, Image] = {}
    out = []
    for steps in groups[1:]:
        parts = _resolve(steps[0].args, args).split()
        alias = parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None
        state = _base_facts(parts[0], built)
        for step in steps[1:]:
            if step.cmd == "COPY" and "/opt/venv" in step.args:
                state.python = state.python or _venv_python(kind)
            if step.cmd != "RUN":
                continue
            for argv in _commands(step.args):
                if argv[0] in _USER_TOOLS:
                    state.run(argv)
                elif argv[:2] == ["uv", "venv"] or argv[:3] == ["python", "-m", "venv"]:
                    state.python = state.python or _venv_python(kind)
        if alias:
            built[alias] = state
        out.append((alias, state, steps))
    return out


def _venv_python(kind: str) -> str:
    # The train image's build stage installs CPython with uv at ARG PYTHON_VERSION; the base image's
    # venv is made by the python base's own interpreter.
    version = arg_defaults(instructions(DOCKERFILES[kind])).get("PYTHON_VERSION")
    return ".".join(version.split(".")[:2]) if version else FACTS["python"]["python"]


def final_state(kind: str) -> Image:
    return replay(kind)[-1][1]


def _required_python() -> tuple[int, ...]:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    return tuple(int(p) for p in spec.removeprefix(">=").split("."))


# --------------------------------------------------------------------------- the checks


@KINDS
def test_user_and_group_commands_succeed_on_the_base(kind: str) -> None:
    try:
        replay(kind)
    except ShadowError as exc:
        pytest.fail(f"Dockerfile.{kind}: {exc}: the base image already holds that id or name (images/base-images.yaml)")


@KINDS
def test_the_final_user_exists_and_home_is_its_home(kind: str) -> None:
    _, state, steps = replay(kind)[-1]
    user = [s.args for s in steps if s.cmd == "USER"][-1]
    uid, _, gid = user.partition(":")
    by_uid = {u: (name, home) for name, (u, _, home) in state.users.items()}
    assert int(uid) in by_uid, f"Dockerfile.{kind}: USER {user} names no user of the image"
    assert int(gid) in state.groups.values(), f"Dockerfile.{kind}: USER {user} names no group of the image"
    env = {}
    for step in steps:
        if step.cmd == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(step.args) if "=" in pair)
    if "HOME" in env:
        assert env["HOME"] == by_uid[int(uid)][1], f"Dockerfile.{kind}: HOME is not user {uid}'s home"


@KINDS
def test_package_manager_and_python_exist_where_used(kind: str) -> None:
    for alias, state, steps in replay(kind):
        for step in (s for s in steps if s.cmd == "RUN"):
            for argv in _commands(step.args):
                if argv[0] in ("apt-get", "apt", "apk", "dnf", "yum", "microdnf"):
                    assert argv[0] == state.package_manager, (
                        f"Dockerfile.{kind} ({alias}): {argv[0]} on a base without it"
                    )
                if argv[0] in ("python", "python3", "pip", "pip3") or (len(argv) > 2 and argv[1] == "pip"):
                    assert state.python, f"Dockerfile.{kind} ({alias}): {argv[0]} on a stage without Python"
        if state.python and any(s.cmd == "RUN" and re.search(r"pip install .*(\s\.|--no-deps \.)(\s|$)", s.args)
                                for s in steps):  # fmt: skip
            assert tuple(int(p) for p in state.python.split(".")) >= _required_python(), (
                f"Dockerfile.{kind}: r1ov needs Python {_required_python()}, the image has {state.python}"
            )


def test_every_base_image_fact_names_its_source() -> None:
    for name, facts in FACTS.items():
        for fact in ("users", "python", "package_manager"):
            assert fact in facts and facts.get(f"{fact}_source"), f"{name}: {fact} without its source"
    # the tag the facts were read for is the tag the Dockerfiles use
    for kind in DOCKERFILES:
        for image in re.findall(r"^ARG \w+_IMAGE=(\S+)", DOCKERFILES[kind].read_text(), re.M):
            name, _, tag = image.partition("@")[0].rpartition(":")
            if name in FACTS:
                assert FACTS[name]["tag"] == tag, f"{image}: facts were read for {name}:{FACTS[name]['tag']}"


def test_the_replay_fails_as_a_build_does_on_an_existing_id() -> None:
    """The defect this test guards against: Ubuntu 24.04 bases already have group and user 1000."""
    noble = Image.from_facts(FACTS["nvidia/cuda"])
    with pytest.raises(ShadowError) as exc:
        noble.run(["groupadd", "--gid", "1000", "r1ov"])
    assert exc.value.code == 4
    with pytest.raises(ShadowError) as exc:
        Image.from_facts(FACTS["nvidia/cuda"]).run(["useradd", "--uid", "1000", "r1ov"])
    assert exc.value.code == 4
    slim = Image.from_facts(FACTS["python"])
    slim.run(["groupadd", "--gid", "1000", "r1ov"])
    slim.run(["useradd", "--uid", "1000", "--gid", "1000", "--create-home", "r1ov"])
    assert slim.users["r1ov"] == (1000, 1000, "/home/r1ov")


# --------------------------------------------------------------------------- make images


def _make_images(tmp_path: Path, docker: str | None) -> subprocess.CompletedProcess[str]:
    """``make images`` with PATH holding only make's own tools and, if given, a ``docker`` stand-in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "git", "make", "echo", "cat"):
        if found := shutil.which(tool):
            (bin_dir / tool).symlink_to(found)
    if docker is not None:
        (bin_dir / "docker").write_text(docker)
        (bin_dir / "docker").chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    return subprocess.run(["make", "-s", "images"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_images_bakes_every_image_where_buildx_exists_and_says_so_where_not(tmp_path: Path) -> None:
    log = tmp_path / "docker.log"
    # A docker whose buildx answers, recording what it is asked to do.
    docker = f'#!/bin/sh\necho "$*" >> {log}\n'
    result = _make_images(tmp_path, docker)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines()[-1] == "buildx bake -f images/docker-bake.hcl"

    (tmp_path / "none").mkdir()
    without = _make_images(tmp_path / "none", None)
    assert without.returncode != 0
    assert "no docker command" in without.stderr and "buildx" in without.stderr

    no_buildx = tmp_path / "nobuildx"
    no_buildx.mkdir()
    result = _make_images(no_buildx, '#!/bin/sh\n[ "$1" = buildx ] && exit 1\nexit 0\n')
    assert result.returncode != 0 and "no buildx plugin" in result.stderr
