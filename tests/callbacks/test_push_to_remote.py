"""PushToRemote: mirroring an output directory to fsspec URLs (``file://`` and ``memory://``).

A plain loop drives an Emitter with a ModelCheckpoint writing into the output directory and a
PushToRemote after it; what reached the remote side is read back and compared byte for byte.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainbus import Bus, Callback, Emitter
from trainbus.callbacks.backup_and_restore import BackupAndRestore
from trainbus.callbacks.model_checkpoint import ModelCheckpoint
from trainbus.callbacks.push_to_remote import CARD_FORMAT, PushToRemote, RemotePushError
from trainbus.numpy_model import NumpyModel
from trainbus.state import collect_states, restore_states

fsspec = pytest.importorskip("fsspec")
MemoryFileSystem = fsspec.get_filesystem_class("memory")


def clear_memory() -> None:
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs.clear()
    MemoryFileSystem.pseudo_dirs.append("")


@pytest.fixture(autouse=True)
def _empty_memory_filesystem() -> Iterator[None]:
    clear_memory()
    yield
    clear_memory()


@pytest.fixture(params=["file", "memory"])
def remote_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A remote URL of each kind: a file:// folder outside the output dir, or memory://."""
    if request.param == "file":
        return (tmp_path / "remote" / "run").as_uri()
    return "memory://remote/run"


def remote_files(pusher: PushToRemote) -> dict[str, bytes]:
    """Everything under the pusher's remote root: relative path -> bytes."""
    fs, root = pusher.fs, pusher.root.rstrip("/")
    if not fs.exists(root or "/"):
        return {}
    found = {}
    for path in fs.find(root or "/"):
        relative = path[len(root) :].lstrip("/") if root else path.lstrip("/")
        found[relative] = fs.cat_file(path)
    return found


def local_files(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }


class Observer(Callback):
    """Attached after the pusher: records the remote state after each push."""

    def __init__(self, pusher: PushToRemote, output_dir: Path) -> None:
        super().__init__()
        self.pusher = pusher
        self.output_dir = output_dir
        self.seen_pushes = 0
        self.pushes: list[tuple[str, int, int]] = []  # (trigger, step, epoch) from the remote card
        self.epoch_ends: list[tuple[dict[str, bytes], dict[str, bytes]]] = []

    def _check(self) -> None:
        if self.pusher.push_count == self.seen_pushes:
            return
        assert self.pusher.push_count == self.seen_pushes + 1  # one push per event at most
        self.seen_pushes = self.pusher.push_count
        card = json.loads(remote_files(self.pusher)["model_card.json"])
        self.pushes.append((card["trigger"], card["step"], card["epoch"]))

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self._check()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self._check()
        self.epoch_ends.append((local_files(self.output_dir), remote_files(self.pusher)))

    def on_train_end(self, logs: Any = None) -> None:
        self._check()


def train(
    callbacks: Sequence[Any],
    *,
    epochs: int = 3,
    steps: int = 4,
    steps_per_execution: int = 1,
    fail_in_epoch: int | None = None,
    val_losses: Sequence[float] | None = None,
) -> NumpyModel:
    """A plain loop; the weights change every batch; val_loss from ``val_losses``."""
    model = NumpyModel({"w": np.zeros(3), "b": np.zeros(1)})
    bus = Bus()
    bus.attach(list(callbacks))
    emitter = Emitter(bus, model=model, steps_per_execution=steps_per_execution)
    with emitter.training(epochs=epochs) as epoch_indices:
        for epoch in epoch_indices:
            for batch in emitter.batches(range(steps)):
                if fail_in_epoch == epoch and batch == 1:
                    raise RuntimeError("boom")
                model.params["w"] += 1.0
                emitter.log(loss=np.float32(1.0 / (epoch + batch + 1)))
            emitter.log(val_loss=(val_losses or [0.5] * epochs)[epoch])
    return model


def checkpoint(output_dir: Path, **kwargs: Any) -> ModelCheckpoint:
    return ModelCheckpoint(str(output_dir / "ckpt" / "epoch-{epoch:02d}.npz"), **kwargs)


# -- strategies -----------------------------------------------------------------------


def test_epoch_strategy_mirrors_checkpoints_and_card_after_each_epoch(
    tmp_path: Path, remote_url: str
) -> None:
    output = tmp_path / "out"
    pusher = PushToRemote(output, remote_url)
    observer = Observer(pusher, output)
    train([checkpoint(output), pusher, observer], epochs=3)

    assert len(observer.epoch_ends) == 3
    for epoch, (local, remote) in enumerate(observer.epoch_ends):
        assert remote == local  # every file, byte for byte, and no temporary names
        assert sorted(remote) == [
            *(f"ckpt/epoch-{e + 1:02d}.npz" for e in range(epoch + 1)),
            "model_card.json",
        ]
        card = json.loads(remote["model_card.json"])
        assert (card["trigger"], card["epoch"], card["step"]) == ("epoch", epoch + 1, 4 * epoch + 4)
    assert observer.pushes == [
        ("epoch", 4, 1),
        ("epoch", 8, 2),
        ("epoch", 12, 3),
        ("train_end", 12, 3),
    ]
    assert remote_files(pusher) == local_files(output)


@pytest.mark.parametrize(
    ("steps_per_execution", "save_steps", "expected"),
    [
        (1, 3, [3, 6, 9, 12]),
        # chunks of 4 over 10 batches end at steps 4, 8, 10 | 14, 18, 20: a push where a
        # multiple of 5 was crossed (once per chunk, even if it crossed more than one)
        (4, 5, [8, 10, 18, 20]),
        (4, 7, [8, 14]),
        (3, 2, [3, 6, 9, 10, 13, 16, 19, 20]),
    ],
)
def test_steps_strategy_pushes_when_the_global_step_crosses_a_multiple(
    tmp_path: Path, steps_per_execution: int, save_steps: int, expected: list[int]
) -> None:
    output = tmp_path / "out"
    pusher = PushToRemote(output, "memory://steps", save_strategy="steps", save_steps=save_steps)
    observer = Observer(pusher, output)
    steps, epochs = (4, 3) if steps_per_execution == 1 else (10, 2)
    train([pusher, observer], epochs=epochs, steps=steps, steps_per_execution=steps_per_execution)
    pushes = observer.pushes
    assert pushes[-1] == ("train_end", steps * epochs, epochs)
    assert [step for trigger, step, _ in pushes[:-1] if trigger == "steps"] == expected
    assert all(trigger == "steps" for trigger, _, _ in pushes[:-1])


@settings(max_examples=25, deadline=None)
@given(
    steps_per_execution=st.integers(1, 5),
    save_steps=st.integers(1, 9),
    steps=st.integers(1, 7),
    epochs=st.integers(1, 3),
)
def test_steps_strategy_matches_the_crossing_rule(
    tmp_path_factory: pytest.TempPathFactory,
    steps_per_execution: int,
    save_steps: int,
    steps: int,
    epochs: int,
) -> None:
    clear_memory()
    output = tmp_path_factory.mktemp("out")
    pusher = PushToRemote(output, "memory://prop", save_strategy="steps", save_steps=save_steps)
    observer = Observer(pusher, output)
    train([pusher, observer], epochs=epochs, steps=steps, steps_per_execution=steps_per_execution)
    # the global step at each chunk end: chunks of steps_per_execution, clamped per epoch
    ends: list[int] = []
    for epoch in range(epochs):
        ends += [
            epoch * steps + min(end, steps)
            for end in range(steps_per_execution, steps + steps_per_execution, steps_per_execution)
        ]
    expected = [
        now for before, now in zip([0, *ends], ends) if now // save_steps > before // save_steps
    ]
    assert [step for trigger, step, _ in observer.pushes if trigger == "steps"] == expected
    assert observer.pushes[-1][0] == "train_end"


def test_no_strategy_pushes_only_at_train_end(tmp_path: Path, remote_url: str) -> None:
    output = tmp_path / "out"
    pusher = PushToRemote(output, remote_url, save_strategy="no")
    observer = Observer(pusher, output)
    train([checkpoint(output), pusher, observer], epochs=3)
    assert all(remote == {} for _, remote in observer.epoch_ends)
    assert observer.pushes == [("train_end", 12, 3)]
    assert pusher.push_count == 1
    assert remote_files(pusher) == local_files(output)
    assert len(remote_files(pusher)) == 4  # three checkpoints and the card


# -- incremental uploads ------------------------------------------------------------------


def spy_uploads(monkeypatch: pytest.MonkeyPatch, pusher: PushToRemote) -> list[str]:
    """Record each ``put_file`` as the uploaded file's path relative to the output dir."""
    uploads: list[str] = []
    real = pusher.fs.put_file

    def put_file(lpath: str, rpath: str, **kwargs: Any) -> None:
        uploads.append(Path(lpath).relative_to(pusher.output_dir).as_posix())
        real(lpath, rpath, **kwargs)

    monkeypatch.setattr(pusher.fs, "put_file", put_file)
    return uploads


def test_unchanged_files_are_not_uploaded_again(
    tmp_path: Path, remote_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "config.json").write_text('{"layers": 2}')
    best = ModelCheckpoint(str(output / "best.npz"), monitor="val_loss", save_best_only=True)
    pusher = PushToRemote(output, remote_url)
    uploads = spy_uploads(monkeypatch, pusher)
    # val_loss improves in epochs 1 and 3 only: best.npz is written twice
    train([best, pusher], epochs=4, val_losses=[0.5, 0.6, 0.4, 0.7])
    assert uploads.count("config.json") == 1
    assert uploads.count("best.npz") == 2
    assert uploads.count("model_card.json") == 5  # four epochs and train end
    assert pusher.upload_count == len(uploads) == 8
    assert remote_files(pusher) == local_files(output)


def test_a_file_rewritten_with_the_same_bytes_is_not_uploaded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out"
    pusher = PushToRemote(output, "memory://same", model_filename="model/weights.npz")
    uploads = spy_uploads(monkeypatch, pusher)
    bus = Bus()
    bus.attach(pusher)
    model = NumpyModel({"w": np.zeros(2)})
    emitter = Emitter(bus, model=model)
    with emitter.training(epochs=3) as epochs:
        for epoch in epochs:
            if epoch == 2:
                model.params["w"] += 1.0  # only the last epoch changes the weights
    # saved (with a new mtime) at every push, uploaded only when its bytes changed
    assert uploads.count("model/weights.npz") == 2
    assert remote_files(pusher)["model/weights.npz"] == (output / "model/weights.npz").read_bytes()
    assert pusher.last_uploaded == ["model_card.json"]


# -- the model card ---------------------------------------------------------------------


def test_model_card_content(tmp_path: Path, remote_url: str) -> None:
    output = tmp_path / "out"
    pusher = PushToRemote(output, remote_url, card_filename="card.json")
    before = datetime.datetime.now(datetime.timezone.utc)
    train([checkpoint(output), pusher], epochs=2, val_losses=[0.75, 0.25])
    after = datetime.datetime.now(datetime.timezone.utc)

    remote = remote_files(pusher)
    assert remote["card.json"] == (output / "card.json").read_bytes()
    card = json.loads(remote["card.json"])
    assert set(card) == {"format", "trigger", "epoch", "step", "logs", "timestamp", "files"}
    assert card["format"] == CARD_FORMAT
    assert (card["trigger"], card["epoch"], card["step"]) == ("train_end", 2, 8)
    # the last epoch's logs: the mean of the batch losses (float32 in the logs), val_loss
    assert set(card["logs"]) == {"loss", "val_loss"}
    assert card["logs"]["val_loss"] == 0.25
    assert card["logs"]["loss"] == pytest.approx(np.mean([1 / 2, 1 / 3, 1 / 4, 1 / 5]), rel=1e-6)
    stamp = datetime.datetime.fromisoformat(card["timestamp"])
    assert before <= stamp <= after
    # the card names the complete set, with sizes and hashes matching the remote files
    assert sorted(card["files"]) == ["ckpt/epoch-01.npz", "ckpt/epoch-02.npz"]
    for name, info in card["files"].items():
        assert info == {
            "size": len(remote[name]),
            "sha256": hashlib.sha256(remote[name]).hexdigest(),
        }
    assert pusher.last_card == card


def test_card_logs_are_json_safe(tmp_path: Path) -> None:
    pusher = PushToRemote(tmp_path / "out", "memory://safe")
    bus = Bus()
    bus.attach(pusher)
    emitter = Emitter(bus, model=NumpyModel({"w": np.zeros(1)}))
    with emitter.training(epochs=1) as epochs:
        for _ in epochs:
            emitter.log(
                acc=np.float64(0.5), nan=float("nan"), arr=np.arange(2), name="x", obj=object
            )
    logs = json.loads(pusher.fs.cat_file("/safe/model_card.json"))["logs"]
    assert logs["acc"] == 0.5
    assert logs["nan"] == "nan"
    assert logs["arr"] == [0, 1]
    assert logs["name"] == "x"
    assert logs["obj"] == repr(object)


# -- publication ------------------------------------------------------------------------


def test_files_are_uploaded_to_a_temporary_name_then_moved(
    tmp_path: Path, remote_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out"
    pusher = PushToRemote(output, remote_url)
    assert pusher.publish == "rename"
    fs = pusher.fs
    real_put, real_mv = fs.put_file, fs.mv
    calls: list[tuple[str, str]] = []
    published: dict[str, bytes] = {}  # final name -> the bytes last moved there

    def put_file(lpath: str, rpath: str, **kwargs: Any) -> None:
        final = pusher._remote_path(Path(lpath).relative_to(output).as_posix())
        name = final.rsplit("/", 1)[-1]
        assert rpath != final
        assert rpath.rsplit("/", 1)[-1].startswith(f".{name}.")
        assert rpath.endswith(".tmp")
        # while uploading, the final name holds nothing or the previous complete file
        if fs.exists(final):
            assert fs.cat_file(final) == published[final]
        calls.append(("put", name))
        real_put(lpath, rpath, **kwargs)

    def mv(path1: str, path2: str, **kwargs: Any) -> None:
        calls.append(("mv", path2.rsplit("/", 1)[-1]))
        real_mv(path1, path2, **kwargs)
        published[path2] = fs.cat_file(path2)

    monkeypatch.setattr(fs, "put_file", put_file)
    monkeypatch.setattr(fs, "mv", mv)
    ckpt = ModelCheckpoint(str(output / "model.npz"))
    train([ckpt, pusher], epochs=2)
    # per push: the checkpoint, then the card last, each put then moved
    card = [("put", "model_card.json"), ("mv", "model_card.json")]
    assert calls == ([("put", "model.npz"), ("mv", "model.npz"), *card] * 2) + card
    assert not [name for name in remote_files(pusher) if name.endswith(".tmp")]


def test_direct_publication_uploads_to_the_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pusher = PushToRemote(tmp_path / "out", "memory://direct", publish="direct")
    targets: list[str] = []
    real = pusher.fs.put_file
    monkeypatch.setattr(
        pusher.fs,
        "put_file",
        lambda lpath, rpath, **kw: (targets.append(rpath), real(lpath, rpath)),
    )
    monkeypatch.setattr(pusher.fs, "mv", lambda *args, **kw: pytest.fail("mv called"))
    train([pusher], epochs=1)
    assert targets == ["/direct/model_card.json"] * 2


def test_auto_publication_is_direct_on_object_stores(tmp_path: Path) -> None:
    class FakeS3(MemoryFileSystem):
        protocol = ("s3", "s3a")

    registry = sys.modules["fsspec.registry"]._registry
    saved = registry.get("s3")
    fsspec.register_implementation("s3", FakeS3, clobber=True)
    try:
        assert PushToRemote(tmp_path / "out", "s3://bucket/prefix").publish == "direct"
    finally:
        registry.pop("s3", None)
        if saved is not None:
            registry["s3"] = saved
    assert PushToRemote(tmp_path / "out", "memory://x").publish == "rename"
    assert PushToRemote(tmp_path / "out", "memory://x", publish="direct").publish == "direct"


# -- failures and aborts ------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["epoch", "no"])
def test_an_aborted_run_pushes_nothing_more_and_does_not_raise(
    tmp_path: Path, remote_url: str, strategy: Any
) -> None:
    output = tmp_path / "out"
    pusher = PushToRemote(output, remote_url, save_strategy=strategy)
    observer = Observer(pusher, output)
    with pytest.raises(RuntimeError, match="boom"):  # the loop's own error, nothing else
        train([checkpoint(output), pusher, observer], epochs=3, fail_in_epoch=1)
    assert pusher.aborted_phase == "train"
    if strategy == "no":
        assert pusher.push_count == 0
        assert remote_files(pusher) == {}
    else:
        assert observer.pushes == [("epoch", 4, 1)]
        remote = remote_files(pusher)
        assert sorted(remote) == ["ckpt/epoch-01.npz", "model_card.json"]
        assert json.loads(remote["model_card.json"])["epoch"] == 1


def test_on_aborted_never_raises(tmp_path: Path) -> None:
    pusher = PushToRemote(tmp_path / "out", "memory://x", verbose=1)
    pusher.on_aborted("train", "RuntimeError: boom", None)
    assert pusher.aborted_phase == "train"
    assert pusher.push_count == 0


def test_a_failed_upload_raises_and_keeps_the_last_complete_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out"
    pusher = PushToRemote(output, "memory://fail")
    real = pusher.fs.put_file

    def put_file(lpath: str, rpath: str, **kwargs: Any) -> None:
        if pusher.push_count == 1 and lpath.endswith(".npz"):
            raise OSError("network down")
        real(lpath, rpath, **kwargs)

    monkeypatch.setattr(pusher.fs, "put_file", put_file)
    with pytest.raises(RemotePushError, match="network down") as raised:
        train([checkpoint(output), pusher], epochs=3)
    assert isinstance(raised.value.__cause__, OSError)
    assert pusher.aborted_phase == "train"
    remote = remote_files(pusher)
    assert sorted(remote) == ["ckpt/epoch-01.npz", "model_card.json"]  # no temporary file
    assert json.loads(remote["model_card.json"])["epoch"] == 1


def test_on_error_warn_retries_at_the_next_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out"
    pusher = PushToRemote(output, "memory://retry", on_error="warn")
    real = pusher.fs.put_file
    failures = [1]

    def put_file(lpath: str, rpath: str, **kwargs: Any) -> None:
        if failures and lpath.endswith("epoch-01.npz"):
            failures.pop()
            raise OSError("flaky")
        real(lpath, rpath, **kwargs)

    monkeypatch.setattr(pusher.fs, "put_file", put_file)
    with pytest.warns(RuntimeWarning, match="flaky.*retrying at the next push"):
        train([checkpoint(output), pusher], epochs=2)
    assert pusher.push_count == 2  # epoch 1 failed; epoch 2 and train end pushed
    assert remote_files(pusher) == local_files(output)


# -- fsspec is optional -----------------------------------------------------------------


def test_missing_fsspec_gives_an_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)  # import fsspec now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'trainbus\[remote\]'"):
        PushToRemote(tmp_path / "out", "memory://x")


def test_importing_trainbus_does_not_import_fsspec() -> None:
    code = (
        "import sys, trainbus, trainbus.callbacks, trainbus.callbacks.push_to_remote; "
        "print('fsspec' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# -- argument validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"save_strategy": "steps"}, "save_steps must be a positive int"),
        ({"save_strategy": "steps", "save_steps": 0}, "save_steps must be a positive int"),
        ({"save_strategy": "steps", "save_steps": -3}, "save_steps must be a positive int"),
        ({"save_steps": 10}, "save_steps is only used with save_strategy='steps'"),
        ({"save_strategy": "no", "save_steps": 10}, "save_steps is only used"),
        ({"save_strategy": "often"}, "save_strategy"),
        ({"save_strategy": "steps", "save_steps": 2.5}, "save_steps"),
        ({"publish": "maybe"}, "publish"),
        ({"on_error": "ignore"}, "on_error"),
        ({"verbose": -1}, "verbose"),
        ({"url": "nosuchproto://bucket/x"}, "url 'nosuchproto://bucket/x'.*no protocol"),
        ({"url": ""}, "url must not be empty"),
        ({"card_filename": "sub/card.json"}, "card_filename must be a plain file name"),
        ({"card_filename": ""}, "card_filename"),
        ({"model_filename": "../model.npz"}, "model_filename must be a relative path"),
        ({"model_filename": "/abs/model.npz"}, "model_filename must be a relative path"),
        ({"model_filename": "model_card.json"}, r"model_filename .* \(card_filename\)"),
        ({"output_dir": ""}, "output_dir must not be empty"),
    ],
)
def test_bad_arguments_are_rejected_naming_the_parameter(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"output_dir": tmp_path / "out", "url": "memory://x"}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        PushToRemote(**arguments)


def test_output_dir_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"output_dir .* is not a directory"):
        PushToRemote(path, "memory://x")


@pytest.mark.parametrize("remote", ["out", "out/mirror", "."])
def test_a_local_mirror_overlapping_the_output_dir_is_rejected(tmp_path: Path, remote: str) -> None:
    with pytest.raises(ValueError, match="overlap"):
        PushToRemote(tmp_path / "out", (tmp_path / remote).resolve().as_uri())


def test_a_missing_backend_is_an_import_error_naming_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(protocol: str) -> Any:
        raise ImportError(f"Install s3fs to access {protocol}")

    monkeypatch.setattr(fsspec, "get_filesystem_class", missing)
    with pytest.raises(ImportError, match="url 's3://b/p' needs the fsspec backend for 's3'"):
        PushToRemote(tmp_path / "out", "s3://b/p")


def test_repr_and_manual_push(tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("hello")
    pusher = PushToRemote(output, "memory://manual", save_strategy="no")
    assert "save_strategy='no'" in repr(pusher)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pusher.push()
    assert pusher.last_uploaded == ["notes.txt", "model_card.json"]
    assert remote_files(pusher)["notes.txt"] == b"hello"
    assert json.loads(remote_files(pusher)["model_card.json"])["trigger"] == "manual"


# -- resume -----------------------------------------------------------------------------


def test_state_round_trip_resumes_the_step_count_without_uploading_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out"
    first = PushToRemote(output, "memory://resume", save_strategy="steps", save_steps=3)
    train([checkpoint(output), first], epochs=1, steps=4)  # pushes at step 3 and at train end
    saved = json.loads(json.dumps(collect_states([first])))  # JSON-compatible

    second = PushToRemote(output, "memory://resume", save_strategy="steps", save_steps=3)
    restore_states([second], saved)
    uploads = spy_uploads(monkeypatch, second)
    observer = Observer(second, output)
    model = NumpyModel({"w": np.zeros(3), "b": np.zeros(1)})
    bus = Bus()
    bus.attach([second, observer])
    emitter = Emitter(bus, model=model)
    with emitter.training(epochs=2, initial_epoch=1) as epochs:
        for _ in epochs:
            for _ in emitter.batches(range(4)):
                pass
    # steps 5..8 continue the count: a push at step 6, then at train end (step 8)
    assert observer.pushes == [("steps", 6, 1), ("train_end", 8, 2)]
    assert "ckpt/epoch-01.npz" not in uploads  # already on the remote side
    assert second.state_key == first.state_key


# -- credentials in the URL --------------------------------------------------------------

TOKEN = "s3cr3tT0ken42"
SECRET_URL = f"memory://alice:{TOKEN}@bucket/run"


def chain(error: BaseException | None) -> list[BaseException]:
    """``error`` and every exception chained to it (cause or context)."""
    found: list[BaseException] = []
    while error is not None and error not in found:
        found.append(error)
        error = error.__cause__ or error.__context__
    return found


def test_credentials_in_the_url_are_never_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"
    pusher = PushToRemote(output, SECRET_URL, verbose=1)
    train([checkpoint(output), pusher], epochs=2)

    printed = capsys.readouterr().out
    assert "uploaded" in printed
    assert "memory://***@bucket/run" in printed
    assert pusher.url == "memory://***@bucket/run"
    for shown in (printed, repr(pusher), pusher.state_key, pusher.url):
        assert TOKEN not in shown
    assert remote_files(pusher)["model_card.json"]  # the push itself used the credentials


def test_a_backup_of_a_run_pushing_with_credentials_stores_no_token(tmp_path: Path) -> None:
    output, backups = tmp_path / "out", tmp_path / "backup"

    def run(url: str, fail_in_epoch: int | None = None) -> PushToRemote:
        pusher = PushToRemote(output, url)
        train([checkpoint(output), pusher, BackupAndRestore(backups)], fail_in_epoch=fail_in_epoch)
        return pusher

    with pytest.raises(RuntimeError, match="boom"):
        run(SECRET_URL, fail_in_epoch=2)
    written = [path for folder in (backups, output) for path in folder.rglob("*") if path.is_file()]
    assert any(path.name == "training_metadata.json" for path in written)
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path
        assert b"alice" not in path.read_bytes(), path

    rotated = run("memory://alice:n3wT0ken99@bucket/run")  # resumes: the state key is the same
    assert rotated.push_count == 2  # epoch 2's push and train end's, after the restore
    assert json.loads(remote_files(rotated)["model_card.json"])["epoch"] == 3


@pytest.mark.parametrize("on_error", ["raise", "warn"])
def test_an_fsspec_error_naming_the_token_is_scrubbed(tmp_path: Path, on_error: str) -> None:
    pusher = PushToRemote(tmp_path / "out", SECRET_URL, on_error=on_error)  # type: ignore[arg-type]
    pusher.fs.pipe_file(pusher.root, b"a file where the folder should be")
    if on_error == "raise":
        with pytest.raises(RemotePushError) as raised:
            pusher.push()
        message, errors = str(raised.value), chain(raised.value)
        assert len(errors) == 1  # fsspec's NotADirectoryError, which shows the token, is not kept
    else:
        with pytest.warns(RuntimeWarning) as warned:
            pusher.push()
        message, errors = str(warned[0].message), []
    assert "FileExistsError" in message  # fsspec found a file where it makes the folder
    assert "/***@bucket/run" in message
    for text in [message, *map(str, errors), *map(repr, errors)]:
        assert TOKEN not in text


def test_a_url_that_cannot_be_opened_hides_its_credentials() -> None:
    pytest.importorskip("ftplib")
    with pytest.raises(OSError, match="could not be opened") as raised:
        PushToRemote("out", f"ftp://alice:{TOKEN}@127.0.0.1:1/run")  # nothing listens on port 1
    assert "ftp://***@127.0.0.1:1/run" in str(raised.value)
    for error in chain(raised.value):
        assert TOKEN not in str(error)
        assert TOKEN not in repr(error)


def test_an_unknown_protocol_error_hides_its_credentials() -> None:
    with pytest.raises(ValueError, match="knows no protocol") as raised:
        PushToRemote("out", f"nosuchproto://alice:{TOKEN}@host/run")
    assert TOKEN not in str(raised.value)
