"""HL7 v2 out: room state, events and alarms as IHE PCD-01 and PCD-04 messages.

Where it sits: above the payload contract (:mod:`roommon.wire.payloads`,
:mod:`roommon.wire.timer`), beside the MQTT publisher. The builders
(:mod:`~roommon.hl7.pcd01`, :mod:`~roommon.hl7.pcd04`) are pure functions
from those payload models to ER7 text; :mod:`~roommon.hl7.queue` keeps the
messages durably until a receiver accepts them; :mod:`~roommon.runtime.hl7_output`
is the daemon's output component that sends them over MLLP
(:mod:`roommon.transports.mllp`). docs/hl7.md describes the messages.
"""
