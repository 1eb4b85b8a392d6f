"""Real ``keras.callbacks`` and a trainbus subscriber inside Hugging Face's ``Trainer``.

Run it with ``pip install "trainbus[torch,keras,huggingface]"`` and
``python examples/hf_trainer_keras_callbacks.py``: a small classifier (a
``torch.nn.Module`` returning ``{"loss": ..., "logits": ...}``, as HF models do)
trains with ``Trainer``; Keras's ``EarlyStopping`` (restoring the best
weights), ``ModelCheckpoint``, ``ReduceLROnPlateau`` and ``CSVLogger`` run
inside it on HF's ``eval_loss`` (as ``val_loss``), and a typed trainbus
subscriber prints each epoch. See docs/trainers.md ("Hugging Face Trainer").
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")  # before the first import of keras

import keras
import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from trainbus import Bus, EpochEnd
from trainbus_torch.huggingface import KerasCallbacks


class Classifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def datasets() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=generator)
    y = (x[:, :4].sum(1) > 0).long()
    rows = [{"x": x[i], "labels": y[i]} for i in range(600)]
    return rows[:500], rows[500:]


def main(epochs: int = 20) -> list[int]:
    torch.manual_seed(0)
    train, val = datasets()

    bus = Bus()

    @bus.on(EpochEnd)
    def report(event: EpochEnd) -> None:
        logs = event.logs
        print(f"epoch {event.epoch}: loss {logs['loss']:.3f} val_loss {logs['val_loss']:.3f}")

    keras_callbacks = KerasCallbacks(
        [
            keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True),
            keras.callbacks.ModelCheckpoint(
                "hf_best.weights.h5", save_best_only=True, save_weights_only=True
            ),
            keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=1),
            keras.callbacks.CSVLogger("hf_log.csv"),
        ],
        bus=bus,
    )
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        report_to=[],
        use_cpu=True,
        save_strategy="no",  # resuming is HF's: a save_strategy and resume_from_checkpoint
        eval_strategy="epoch",  # val_ logs in on_epoch_end, as in Keras
        logging_strategy="epoch",  # loss: the epoch's mean training loss
        lr_scheduler_type="constant",  # ReduceLROnPlateau owns the rate
        disable_tqdm=True,
        log_level="error",
        num_train_epochs=epochs,
        per_device_train_batch_size=50,
        per_device_eval_batch_size=100,
        learning_rate=0.1,
        optim="sgd",
        seed=0,
    )
    trainer = Trainer(
        model=Classifier(),
        args=args,
        train_dataset=train,
        eval_dataset=val,
        callbacks=[keras_callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # the subscriber prints instead
    trainer.train()
    assert keras_callbacks.history is not None
    return keras_callbacks.history.epoch


if __name__ == "__main__":
    main()
