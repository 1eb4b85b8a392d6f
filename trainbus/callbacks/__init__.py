"""Keras-style callbacks: the ``Callback`` base class and the bus bridge."""

from trainbus.callbacks.base import Callback, default, is_default
from trainbus.callbacks.bridge import Attachment, attach, overridden_hooks
from trainbus.callbacks.callback_list import CallbackList

__all__ = [
    "Attachment",
    "Callback",
    "CallbackList",
    "attach",
    "default",
    "is_default",
    "overridden_hooks",
]
