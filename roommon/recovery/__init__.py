"""Recovery after cement injection: plans, the per-room timer, its store, messages and view.

Data flow: the cement check's room events and the nurses' commands drive one
:class:`~roommon.recovery.timer.RecoveryTimer` per room; its events are
persisted by :class:`~roommon.recovery.store.RecoveryStore` and published as
:mod:`~roommon.recovery.messages`; ``roommon timers``
(:mod:`roommon.cli.timers`) shows every room's timer from the broker.
"""
