"""Start one container's process the way a node's runtime does, inside a private mount namespace.

    unshare --mount --pid --fork --mount-proc --propagation private -- python -m r1ov.testing.podexec SPEC.json

Run as root by :mod:`r1ov.testing.kubelet`. SPEC is ``{"mounts": [[source, target, read_only], ...],
"tmpfs": [path, ...], "uid": int, "gid": int, "workdir": str, "command": [...], "env": {...}}``.
It bind-mounts each declared volume at its mount path (read-only where the pod says so), mounts a
fresh tmpfs on each ``tmpfs`` path (the container's own /tmp; no volume may lie under one), drops to the pod's user
and group, changes to its working directory and execs the command with exactly ``env``. Everything
else of the host stays as it is, so a path no volume covers is writable only where the host would
let that user write (nowhere the project keeps files).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        spec = json.load(f)
    # The image's own files that live on this machine under a directory the pod's user may not enter
    # (a Python under /root): that directory is replaced by an empty one holding only those files.
    for i, (path, hidden_parent) in enumerate(spec.get("image_paths", [])):
        staging = os.path.join(spec["staging"], str(i))
        os.makedirs(staging, exist_ok=True)
        _mount("--bind", path, staging)
        spec.setdefault("_staged", []).append((staging, path, hidden_parent))
    for hidden_parent in sorted({parent for _, _, parent in spec.get("_staged", [])}):
        _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", hidden_parent)
    for staging, path, _ in spec.get("_staged", []):
        os.makedirs(path, exist_ok=True)
        _mount("--bind", staging, path)
        _mount("-o", "remount,bind,ro", path)
    # Volumes next: their sources may live under a path the tmpfs mounts below then cover.
    for source, target, read_only in spec["mounts"]:
        # A mount point the host lacks is made (empty, root's): the runtime does the same in the image.
        os.makedirs(target, exist_ok=True)
        _mount("--bind", source, target)
        if read_only:
            _mount("-o", "remount,bind,ro", target)
    for i, path in enumerate(spec["tmpfs"]):
        carried = [p for p in spec.get("carried", []) if os.path.commonpath([p, path]) == path]
        if not carried:
            os.makedirs(path, exist_ok=True)
            _mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", path)
            continue
        # The image's own files sit on this machine under this path (a checkout under /tmp): the
        # pod's fresh tmpfs is built aside with them bound in read-only, then moved over the path.
        fresh = os.path.join(spec["staging"], f"tmpfs-{i}")
        os.makedirs(fresh, exist_ok=True)
        _mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", fresh)
        for source in carried:
            inner = os.path.join(fresh, os.path.relpath(source, path))
            os.makedirs(inner, exist_ok=True)
            _mount("--bind", source, inner)
            _mount("-o", "remount,bind,ro", inner)
        _mount("--move", fresh, path)
    os.setgroups([])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    try:
        os.chdir(spec["workdir"])
    except OSError as exc:
        print(f"Error: failed to start container: chdir to cwd {spec['workdir']!r}: {exc}", file=sys.stderr)
        return 128
    env = spec["env"]
    executable = shutil.which(spec["command"][0], path=env.get("PATH", "")) or spec["command"][0]
    try:
        os.execve(executable, spec["command"], env)
    except OSError as exc:
        print(f"Error: failed to start container: exec {spec['command'][0]!r}: {exc}", file=sys.stderr)
        return 128


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
