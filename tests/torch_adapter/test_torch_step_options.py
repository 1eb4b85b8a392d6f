"""fit's step options on real digits training: precision, clipping, accumulation, schedulers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from trainbus import Bus  # noqa: E402
from trainbus.callbacks import Callback  # noqa: E402
from trainbus_torch import fit  # noqa: E402

nn = torch.nn
F = torch.nn.functional


def batches(x: Any, y: Any, size: int) -> list[tuple[Any, Any]]:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


@pytest.fixture(scope="module")
def digits() -> tuple[Any, Any]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[order][:1500], y[order][:1500]


def mlp(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


class DtypeProbe(nn.Module):
    """An MLP that records the dtype its hidden activations are computed in."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()
        self.seen: set[torch.dtype] = set()

    def forward(self, x: Any) -> Any:
        hidden = self.net[0](x)
        self.seen.add(hidden.dtype)
        return self.net[2](self.net[1](hidden))


class Recorder(Callback):
    """What callbacks see: batch indices, learning rates, the weights around each batch."""

    def __init__(self, weights: bool = False) -> None:
        super().__init__()
        self.weights = weights
        self.batch_indices: list[list[int]] = []
        self.batch_lrs: list[float] = []
        self.epoch_lrs: list[float] = []
        self.updates: list[list[np.ndarray]] = []
        self.steps: int | None = None

    def on_train_begin(self, logs: Any = None) -> None:
        self.steps = self.params["steps"]

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.batch_indices.append([])
        self.epoch_lrs.append(self.model.optimizer.learning_rate)

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.batch_indices[-1].append(batch)
        self.batch_lrs.append(self.model.optimizer.learning_rate)
        if self.weights:
            self._before = self.model.get_weights()

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if self.weights:
            after = self.model.get_weights()
            self.updates.append([a - b for a, b in zip(after, self._before, strict=True)])


def global_norm(arrays: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(float((a.astype(np.float64) ** 2).sum()) for a in arrays)))


# -- mixed precision -----------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu_trains_and_runs_the_forward_in_half(
    digits: Any, precision: str
) -> None:
    x, y = digits
    module = DtypeProbe()
    history = fit(
        module,
        torch.optim.SGD(module.parameters(), lr=0.2),
        F.cross_entropy,
        batches(x, y, 64),
        epochs=3,
        validation_data=batches(x[:300], y[:300], 100),
        precision=precision,
        verbose=0,
        bus=Bus(),
    )
    expected = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert module.seen == {expected}  # training and validation forwards alike
    assert all(p.dtype == torch.float32 for p in module.parameters())  # master weights stay
    losses = history.history["loss"]
    assert losses[-1] < losses[0] * 0.7
    assert all(np.isfinite(losses))


def test_without_precision_the_forward_runs_in_float32(digits: Any) -> None:
    x, y = digits
    module = DtypeProbe()
    fit(module, torch.optim.SGD(module.parameters(), lr=0.1), F.cross_entropy,
        batches(x, y, 500), epochs=1, verbose=0, bus=Bus())  # fmt: skip
    assert module.seen == {torch.float32}


# -- clipping ------------------------------------------------------------------------------


def updates_with(digits: Any, **options: Any) -> list[list[np.ndarray]]:
    x, y = digits
    net = mlp()
    recorder = Recorder(weights=True)
    fit(
        net,
        torch.optim.SGD(net.parameters(), lr=0.5),  # no momentum: update = -lr * gradient
        F.cross_entropy,
        batches(x[:640], y[:640], 64),
        epochs=1,
        callbacks=[recorder],
        verbose=0,
        bus=Bus(),
        **options,
    )
    return recorder.updates


def test_clip_norm_bounds_every_update(digits: Any) -> None:
    lr, clip = 0.5, 0.05
    unclipped = [global_norm(update) for update in updates_with(digits)]
    assert min(unclipped) > lr * clip * 2  # the bound below would bite
    clipped = [global_norm(update) for update in updates_with(digits, clip_norm=clip)]
    assert len(clipped) == 10
    assert max(clipped) <= lr * clip * (1 + 1e-4)
    assert clipped[0] == pytest.approx(lr * clip, rel=1e-4)  # a larger gradient is scaled to it


def test_clip_value_bounds_every_gradient_element(digits: Any) -> None:
    lr, clip = 0.5, 0.002
    unclipped = max(max(float(np.abs(a).max()) for a in update) for update in updates_with(digits))
    assert unclipped > lr * clip * 2
    clipped = [
        max(float(np.abs(a).max()) for a in u) for u in updates_with(digits, clip_value=clip)
    ]
    assert max(clipped) == pytest.approx(lr * clip, rel=1e-4)


def test_clipping_under_fp16_is_applied_to_unscaled_gradients(digits: Any) -> None:
    lr, clip = 0.5, 0.05
    norms = [global_norm(u) for u in updates_with(digits, precision="fp16", clip_norm=clip)]
    # the scaler's first step may be skipped (inf); every update made is clipped, not scaled away
    assert [n for n in norms if n > 0]
    assert max(norms) <= lr * clip * (1 + 1e-3)
    assert max(norms) == pytest.approx(lr * clip, rel=1e-2)


# -- accumulation --------------------------------------------------------------------------


def test_accumulation_steps_the_optimizer_once_per_group(digits: Any) -> None:
    x, y = digits
    data = batches(x, y, 64)  # 24 batches: the last holds 28 samples
    assert len(data) == 24
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    optimizer_steps: list[int] = []
    optimizer.register_step_post_hook(lambda *_: optimizer_steps.append(1))
    recorder = Recorder()
    history = fit(
        net, optimizer, F.cross_entropy, data, epochs=2, accumulate=5,
        callbacks=[recorder], verbose=0, bus=Bus(),
    )  # fmt: skip
    # groups of 5, 5, 5, 5, 4: the partial last group is stepped on
    assert len(optimizer_steps) == 2 * 5
    assert recorder.steps == 5
    assert recorder.batch_indices == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]
    assert history.history["loss"][1] < history.history["loss"][0]


def test_accumulating_halves_equals_training_on_whole_batches(digits: Any) -> None:
    x, y = digits
    x, y = x[:1024], y[:1024]
    whole_net, halves_net = mlp(), mlp()
    whole = fit(whole_net, torch.optim.SGD(whole_net.parameters(), lr=0.3), F.cross_entropy,
                batches(x, y, 64), epochs=2, verbose=0, bus=Bus())  # fmt: skip
    halves = fit(halves_net, torch.optim.SGD(halves_net.parameters(), lr=0.3), F.cross_entropy,
                 batches(x, y, 32), epochs=2, accumulate=2, verbose=0, bus=Bus())  # fmt: skip
    for a, b in zip(whole_net.parameters(), halves_net.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    # the epoch loss is the mean over the same samples
    assert halves.history["loss"] == pytest.approx(whole.history["loss"], rel=1e-4)


def test_steps_per_execution_counts_groups(digits: Any) -> None:
    x, y = digits
    net = mlp()
    recorder = Recorder()
    fit(net, torch.optim.SGD(net.parameters(), lr=0.1), F.cross_entropy,
        batches(x[:1280], y[:1280], 64), epochs=1, accumulate=2, steps_per_execution=4,
        callbacks=[recorder], verbose=0, bus=Bus())  # fmt: skip
    # 20 micro-batches, 10 optimizer steps, batch events for chunks of 4 steps: 0, 4, 8
    assert recorder.steps == 10
    assert recorder.batch_indices == [[0, 4, 8]]


def test_steps_per_epoch_counts_optimizer_steps_when_accumulating(digits: Any) -> None:
    x, y = digits
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    optimizer_steps: list[int] = []
    optimizer.register_step_post_hook(lambda *_: optimizer_steps.append(1))
    model_batches: list[int] = []
    recorder = Recorder()
    counting = nn.Sequential(net)
    counting.register_forward_hook(lambda *_: model_batches.append(1))
    fit(counting, optimizer, F.cross_entropy, batches(x[:1280], y[:1280], 64), epochs=2,
        accumulate=3, steps_per_epoch=2, callbacks=[recorder], verbose=0,
        bus=Bus())  # fmt: skip
    # Keras's params["steps"] is steps_per_epoch: 2 groups of 3 micro-batches an epoch
    assert recorder.steps == 2
    assert recorder.batch_indices == [[0, 1], [0, 1]]
    assert len(optimizer_steps) == 4
    assert len(model_batches) == 2 * 2 * 3


# -- schedulers ----------------------------------------------------------------------------


def test_a_per_batch_scheduler_steps_after_every_optimizer_step(digits: Any) -> None:
    x, y = digits
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9**step)
    recorder = Recorder()
    fit(net, optimizer, F.cross_entropy, batches(x[:768], y[:768], 64), epochs=2,
        accumulate=3, scheduler=scheduler, scheduler_interval="batch",
        callbacks=[recorder], verbose=0, bus=Bus())  # fmt: skip
    # 12 micro-batches → 4 optimizer steps an epoch, 8 in all
    assert recorder.batch_lrs == pytest.approx([0.1 * 0.9**step for step in range(8)])
    assert recorder.epoch_lrs == pytest.approx([0.1, 0.1 * 0.9**4])


def test_a_per_epoch_scheduler_steps_after_every_epoch(digits: Any) -> None:
    x, y = digits
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    recorder = Recorder()
    fit(net, optimizer, F.cross_entropy, batches(x[:256], y[:256], 64), epochs=3,
        scheduler=scheduler, callbacks=[recorder], verbose=0, bus=Bus())  # fmt: skip
    assert recorder.epoch_lrs == pytest.approx([0.1, 0.05, 0.025])
    assert recorder.batch_lrs == pytest.approx([0.1] * 4 + [0.05] * 4 + [0.025] * 4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0125)


class StalledValidation(Callback):
    """Reports a val_loss that never improves (it runs before the scheduler)."""

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs["val_loss"] = 1.0


def test_torch_reduce_lr_on_plateau_steps_on_the_monitored_epoch_log(digits: Any) -> None:
    x, y = digits
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    recorder = Recorder()
    data = batches(x[:256], y[:256], 64)
    fit(net, optimizer, F.cross_entropy, data, epochs=4, validation_data=data[:1],
        scheduler=scheduler, callbacks=[StalledValidation(), recorder], verbose=0,
        bus=Bus())  # fmt: skip
    assert recorder.epoch_lrs == pytest.approx([0.1, 0.1, 0.05, 0.025])

    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    with pytest.raises(ValueError, match=r"scheduler_monitor='val_accuracy', a validation log"):
        fit(net, optimizer, F.cross_entropy, data, epochs=1, scheduler=scheduler,
            scheduler_monitor="val_accuracy", verbose=0, bus=Bus())  # fmt: skip


def test_torch_reduce_lr_on_plateau_skips_epochs_without_validation(digits: Any) -> None:
    x, y = digits
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    # patience=0, and a validation loss that never improves after its first value: every
    # epoch that validates reduces the rate, except the first one that sets the best.
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    recorder = Recorder()
    data = batches(x[:256], y[:256], 64)
    with pytest.warns(UserWarning, match=r"which the logs of epoch 0 lack") as warned:
        history = fit(net, optimizer, F.cross_entropy, data, epochs=6, validation_data=data[:1],
                      validation_freq=2, scheduler=scheduler, callbacks=[recorder],
                      verbose=0, bus=Bus())  # fmt: skip
    assert len([w for w in warned if "ReduceLROnPlateau" in str(w.message)]) == 1  # once a run
    assert len(history.history["val_loss"]) == 3  # epochs 1, 3, 5 validated
    # it stepped on epochs 1, 3 and 5 only: the rate can change after those alone
    lrs = recorder.epoch_lrs
    assert lrs[0] == lrs[1] == lrs[2] == 0.1
    assert lrs[3] == lrs[2] or lrs[3] == lrs[2] / 2
    assert lrs[4] == lrs[3]
    assert lrs[5] == lrs[4] or lrs[5] == lrs[4] / 2
    assert scheduler.last_epoch == 3


def test_torch_reduce_lr_on_plateau_on_a_log_no_epoch_has_warns_and_never_steps(
    digits: Any,
) -> None:
    x, y = digits
    net = mlp()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    with pytest.warns(UserWarning, match=r"scheduler_monitor='accuracy'.*they have \['loss'\]"):
        fit(net, optimizer, F.cross_entropy, batches(x[:128], y[:128], 64), epochs=2,
            scheduler=scheduler, scheduler_monitor="accuracy", verbose=0, bus=Bus())  # fmt: skip
    assert scheduler.last_epoch == 0


# -- bad options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"precision": "fp8"},
            ValueError,
            r"precision must be None .* 'bf16' or 'fp16', got 'fp8'",
        ),
        ({"precision": torch.bfloat16}, ValueError, r"precision must be .*got torch.bfloat16"),
        ({"clip_norm": 0}, ValueError, r"clip_norm must be a positive finite number, got 0"),
        ({"clip_norm": float("inf")}, ValueError, r"clip_norm must be a positive finite"),
        ({"clip_value": "1"}, TypeError, r"clip_value must be a positive number or None, got '1'"),
        ({"clip_value": True}, TypeError, r"clip_value must be a positive number"),
        ({"accumulate": 0}, ValueError, r"accumulate must be an int >= 1 .*got 0"),
        ({"accumulate": 2.0}, ValueError, r"accumulate must be an int >= 1 .*got 2.0"),
        (
            {"scheduler_interval": "step"},
            ValueError,
            r"scheduler_interval must be 'batch' .*'step'",
        ),
        ({"scheduler": 0.1}, TypeError, r"scheduler must be a torch.optim.lr_scheduler .*float"),
        ({"scheduler_monitor": ""}, TypeError, r"scheduler_monitor must be the name"),
    ],
)
def test_bad_options_are_refused_before_training(
    digits: Any, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    x, y = digits
    net = mlp()
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(error, match=message):
        fit(net, torch.optim.SGD(net.parameters(), lr=0.1), F.cross_entropy,
            batches(x[:128], y[:128], 64), epochs=1, verbose=0, bus=Bus(), **options)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_a_scheduler_must_drive_fits_optimizer(digits: Any) -> None:
    x, y = digits
    net = mlp()
    other = torch.optim.SGD(net.parameters(), lr=0.1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    data = batches(x[:128], y[:128], 64)
    with pytest.raises(ValueError, match=r"StepLR was built on another optimizer"):
        fit(net, optimizer, F.cross_entropy, data, epochs=1, verbose=0, bus=Bus(),
            scheduler=torch.optim.lr_scheduler.StepLR(other, 1))  # fmt: skip
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau steps on an epoch metric.*callback"):
        fit(net, optimizer, F.cross_entropy, data, epochs=1, verbose=0, bus=Bus(),
            scheduler=plateau, scheduler_interval="batch")  # fmt: skip
