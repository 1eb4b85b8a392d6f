"""Keras-style callbacks: the ``Callback`` base class, ``CallbackList`` and the built-ins.

Every built-in works on any :class:`~trainbus.ModelHandle` (NumPy now, PyTorch and
JAX through their adapters), mirrors the Keras 3 class of the same name, and
validates its arguments when it is built.
"""

from trainbus.callbacks.backup_and_restore import BackupAndRestore, CorruptBackupError
from trainbus.callbacks.base import Callback
from trainbus.callbacks.callback_list import CallbackList
from trainbus.callbacks.csv_logger import CSVLogger
from trainbus.callbacks.early_stopping import EarlyStopping
from trainbus.callbacks.history import History
from trainbus.callbacks.lambda_callback import LambdaCallback
from trainbus.callbacks.learning_rate_scheduler import LearningRateScheduler
from trainbus.callbacks.metric_callback import MetricCallback
from trainbus.callbacks.model_checkpoint import CheckpointPathError, ModelCheckpoint
from trainbus.callbacks.monitor import MonitorCallback, monitor_direction
from trainbus.callbacks.progbar_logger import ProgbarLogger
from trainbus.callbacks.push_to_remote import PushToRemote, RemotePushError
from trainbus.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from trainbus.callbacks.tensorboard import TensorBoard
from trainbus.callbacks.terminate_on_nan import TerminateOnNaN
from trainbus.state import Stateful, collect_states, restore_states

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "CheckpointPathError",
    "CorruptBackupError",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "MetricCallback",
    "ModelCheckpoint",
    "MonitorCallback",
    "ProgbarLogger",
    "PushToRemote",
    "ReduceLROnPlateau",
    "RemotePushError",
    "Stateful",
    "TensorBoard",
    "TerminateOnNaN",
    "collect_states",
    "monitor_direction",
    "restore_states",
]
