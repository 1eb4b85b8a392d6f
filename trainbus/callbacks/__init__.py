"""Keras-style callbacks: the ``Callback`` base class and the bus bridge."""

from trainbus.callbacks.base import Callback, default, is_default
from trainbus.callbacks.bridge import Attachment, attach, overridden_hooks

__all__ = ["Attachment", "Callback", "attach", "default", "is_default", "overridden_hooks"]
