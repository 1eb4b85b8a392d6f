"""Export the ``trainbus`` package of a git revision under another name, for before/after runs.

``benchmarks/dispatch.py --baseline MODULE`` and ``benchmarks/epoch_memory.py --baseline
MODULE`` measure the working tree's ``trainbus`` side by side with an older copy of it. This
script makes that copy::

    python benchmarks/snapshot.py HEAD /tmp/trainbus-snapshots --name trainbus_before

exports the ``trainbus`` folder of ``HEAD`` (``git archive``, so the working tree's edits are
not in it) to ``/tmp/trainbus-snapshots/trainbus_before/``, rewrites the package's absolute
imports of itself (``from trainbus...``, ``import trainbus...``, in code and in doctest lines)
to ``trainbus_before`` so that both copies can be imported in one process, and writes
``SNAPSHOT.json`` next to them (the revision, its full commit, when). Strings that merely
mention trainbus (logger names, file-format markers, messages) are left as they are. The
adapters (``trainbus_torch``, ``trainbus_jax``) are not copied: they keep importing the
working tree's ``trainbus``.

Then it checks the copy in a fresh interpreter: it imports, it is the copy (not the working
tree's package), importing it does not import ``trainbus``, and a tiny epoch through its
``Emitter`` (a typed ``EpochEnd`` subscriber and a Keras-style ``Callback``) gives the right
mean. Last, it prints the ``PYTHONPATH`` to run the benchmarks with.

Module-level state is per copy: a converter or reducer registered with
``trainbus.logs.register_converter`` is unknown to ``trainbus_before`` (plain floats, as
``dispatch.py`` logs, need none).

It refuses to write inside the repository unless ``--allow-inside-repo`` is given, and
replaces an existing ``DEST/NAME`` only if that is an earlier snapshot (it holds a
``SNAPSHOT.json``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from datetime import datetime, timezone
from pathlib import Path

PACKAGE = "trainbus"
DEFAULT_DEST = Path(tempfile.gettempdir()) / "trainbus-snapshots"
MARKER = "SNAPSHOT.json"

# An import statement of the package itself, in code or in a doctest line:
# "from trainbus import X", "from trainbus.logs import X", "import trainbus",
# "import trainbus.events as events".
_IMPORT = re.compile(
    rf"^(?P<lead>[ \t]*(?:(?:>>>|\.\.\.)[ \t]+)?)(?P<kw>from|import)[ \t]+{PACKAGE}(?=[ \t.,]|$)",
    re.MULTILINE,
)
# What would still import the original package after the rewrite (reported, then refused).
_LEFTOVER = re.compile(
    rf"^[ \t]*(?:(?:>>>|\.\.\.)[ \t]+)?(?:from[ \t]+{PACKAGE}\b|import[ \t][^#\n]*\b{PACKAGE}\b)"
    rf"|import_module\([\"']{PACKAGE}\b",
    re.MULTILINE,
)


def git(repo: Path, *args: str) -> bytes:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {result.stderr.decode().strip()}")
    return result.stdout


def rewrite(source: str, name: str) -> tuple[str, int]:
    """``source`` with the package's absolute imports renamed to ``name``; and how many."""
    return _IMPORT.subn(lambda m: f"{m['lead']}{m['kw']} {name}", source)


def export(repo: Path, rev: str, target: Path, name: str) -> dict[str, object]:
    """Write the package at ``rev`` to ``target`` (which must not exist), renamed ``name``."""
    commit = git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()
    archive = git(repo, "archive", "--format=tar", commit, PACKAGE)
    rewritten = 0
    files = 0
    leftovers: list[str] = []
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(scratch, filter="data")
            else:  # Python < 3.11.4; the archive comes from our own repository
                tar.extractall(scratch)
        root = Path(scratch) / PACKAGE
        for path in sorted(root.rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            new, count = rewrite(text, name)
            files += 1
            rewritten += count
            if count:
                path.write_text(new, encoding="utf-8")
            for match in _LEFTOVER.finditer(new):
                line = new.count("\n", 0, match.start()) + 1
                leftovers.append(f"{path.relative_to(root)}:{line}: {match.group(0).strip()}")
        if leftovers:
            raise SystemExit(
                "imports of the original package remain after the rewrite:\n  "
                + "\n  ".join(leftovers)
            )
        info: dict[str, object] = {
            "name": name,
            "package": PACKAGE,
            "rev": rev,
            "commit": commit,
            "subject": git(repo, "log", "-1", "--format=%s", commit).decode().strip(),
            "repository": str(repo),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "python_files": files,
            "imports_rewritten": rewritten,
        }
        (root / MARKER).write_text(json.dumps(info, indent=2) + "\n")
        root.rename(target)
    return info


_CHECK = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    name, dest, original = sys.argv[1], Path(sys.argv[2]).resolve(), sys.argv[3]
    module = __import__(name)
    where = Path(module.__file__).resolve()
    assert where.parent == dest / name, f"imported {where}, not the snapshot under {dest}"
    assert original not in sys.modules, f"importing {name} imported {original} too"

    means = []

    class Record(module.Callback):
        def on_epoch_end(self, epoch, logs=None):
            means.append(("callback", logs["loss"]))

    bus = module.Bus("snapshot-check")
    bus.subscribe(module.EpochEnd, lambda event: means.append(("typed", event.logs["loss"])))
    bus.attach([Record()])
    emitter = module.Emitter(bus)
    with emitter.training(epochs=1) as epochs:
        for epoch in epochs:
            for batch in emitter.batches(range(4)):
                emitter.log(loss=float(batch))
    emitter.on_train_begin()
    emitter.on_epoch_begin(0)
    for batch in range(4):
        emitter.on_train_batch_begin(batch)
        emitter.on_train_batch_end(batch, {"loss": float(batch)})
    emitter.on_epoch_end(0)
    emitter.on_train_end()
    expected = [("typed", 1.5), ("callback", 1.5)] * 2
    assert means == expected, f"epoch means {means}, expected {expected}"
    assert original not in sys.modules, f"running {name} imported {original}"
    print(f"{name} {getattr(module, '__version__', '?')} from {where.parent}: "
          "imports alone, two epochs ok")
    """
)


def check(dest: Path, name: str) -> str:
    """Import the snapshot in a fresh interpreter and run two tiny epochs through it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(dest), env.get("PYTHONPATH", "")) if p)
    result = subprocess.run(
        [sys.executable, "-c", _CHECK, name, str(dest), PACKAGE],
        env=env,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),  # not the repository: its trainbus must not be on the path
    )
    if result.returncode != 0:
        raise SystemExit(f"the snapshot does not work:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Export trainbus at a git revision under another name (before/after runs)."
    )
    parser.add_argument("rev", help="git revision (commit, branch, tag, HEAD~3, ...)")
    parser.add_argument(
        "dest",
        nargs="?",
        type=Path,
        default=DEFAULT_DEST,
        help=f"folder that gets DEST/NAME/ (default {DEFAULT_DEST})",
    )
    parser.add_argument("--name", default="trainbus_before", help="import name of the copy")
    parser.add_argument(
        "--repo",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="the git repository (default: the one holding this script)",
    )
    parser.add_argument(
        "--allow-inside-repo", action="store_true", help="allow DEST inside the repository"
    )
    args = parser.parse_args(argv)
    if not args.name.isidentifier() or args.name == PACKAGE:
        parser.error(f"--name must be a Python identifier other than {PACKAGE!r}")
    repo = Path(git(args.repo, "rev-parse", "--show-toplevel").decode().strip()).resolve()
    dest = args.dest.expanduser().resolve()
    if inside(dest, repo) and not args.allow_inside_repo:
        parser.error(f"{dest} is inside the repository {repo} (--allow-inside-repo to allow)")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / args.name
    if target.exists():
        if not (target / MARKER).is_file():
            parser.error(f"{target} exists and is not a snapshot ({MARKER} missing): not replaced")
        shutil.rmtree(target)
    info = export(repo, args.rev, target, args.name)
    print(
        f"Exported {PACKAGE} at {info['rev']} ({str(info['commit'])[:12]} {info['subject']}) "
        f"to {target}: {info['python_files']} files, {info['imports_rewritten']} imports renamed"
    )
    print(check(dest, args.name))
    print()
    print("Run the benchmarks with both copies importable:")
    print(f"  export PYTHONPATH={dest}{os.pathsep}$PYTHONPATH")
    print(f"  python benchmarks/dispatch.py --quick --baseline {args.name}")
    print(f"  python benchmarks/epoch_memory.py --quick --baseline {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
