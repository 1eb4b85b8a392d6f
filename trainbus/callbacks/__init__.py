"""Keras-style callbacks: the ``Callback`` base class and the bus bridge."""

from trainbus.callbacks.base import Callback, default, is_default
from trainbus.callbacks.bridge import Attachment, attach, overridden_hooks
from trainbus.callbacks.callback_list import CallbackList
from trainbus.callbacks.early_stopping import EarlyStopping
from trainbus.callbacks.monitor import MonitorCallback, monitor_direction
from trainbus.callbacks.state import Stateful, collect_states, restore_states

__all__ = [
    "Attachment",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "MonitorCallback",
    "Stateful",
    "attach",
    "collect_states",
    "default",
    "is_default",
    "monitor_direction",
    "overridden_hooks",
    "restore_states",
]
