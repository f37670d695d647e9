"""Fakes and rigs shipped for tests (ours and users'), all real parts.

* :mod:`~roommon.testing.broker`: a real Mosquitto on a free loopback port;
* :mod:`~roommon.testing.pki`: a CA, server and client certificates made by ``openssl``;
* :mod:`~roommon.testing.collector`: a real MQTT subscriber keeping what it gets;
* :mod:`~roommon.testing.capture`: a room output capturing alarms, events, state;
* :mod:`~roommon.testing.pty`: a device on a real pseudo-terminal;
* :mod:`~roommon.testing.mllp`: a real HL7 MLLP receiver (python-hl7), for the HL7 output;
* :mod:`~roommon.testing.checks`: a harness that drives one check and keeps its reports;
* :mod:`~roommon.testing.drivers`: the contract every registered serial driver keeps;
* :mod:`~roommon.testing.logs`: structured-log capture;
* :mod:`~roommon.testing.browser`: the headless Chromium of the display tests.
* :mod:`~roommon.testing.ecg_replay`: an ECG signal replayed through a room pipeline.

Nothing here is mocked. Only loopback addresses are ever used.
"""

from roommon.testing.broker import LOOPBACK, MosquittoBroker, free_port
from roommon.testing.browser import CHROMIUM_ARGS, chromium_executable
from roommon.testing.capture import CaptureOutput
from roommon.testing.collector import MqttCollector, Received
from roommon.testing.mllp import MllpPeer
from roommon.testing.pty import Pty, PtyDevice

__all__ = [
    "CHROMIUM_ARGS",
    "LOOPBACK",
    "CaptureOutput",
    "MllpPeer",
    "MosquittoBroker",
    "MqttCollector",
    "Pty",
    "PtyDevice",
    "Received",
    "chromium_executable",
    "free_port",
]
