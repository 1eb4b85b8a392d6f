"""The emitter: drives a bus from a training loop (see :class:`Emitter`).

One concept per module, each building on the ones before it:

* ``lifecycle``: the eight states a run moves through, and the errors for calls
  out of order;
* ``batch_logs``: which batch logs are copied before they are kept, and the
  sample counts that weigh them (the means themselves: :mod:`trainbus.means`);
* ``delivery``: the compiled plans and how a batch event reaches them;
* ``state``: :class:`~trainbus.emitter.state.EmitterState`, the counters and
  the bookkeeping between calls;
* ``keras_hooks``: the Keras ``CallbackList`` hook methods (the two
  training-batch hooks are the hot path; their shortcuts are listed there);
* ``iteration``: the iterator API and :class:`Emitter` itself.
"""

from trainbus.emitter.iteration import Emitter
from trainbus.emitter.state import default_bus

__all__ = ["Emitter", "default_bus"]
