"""Numpy signal building blocks shared by the waveform checks.

Sits between a check's ``on_chunk`` and its decision logic: chunks of any size
go into a :class:`~roommon.signal.blocks.BlockAssembler`, which hands fixed-size
blocks on; detectors such as :class:`~roommon.signal.pulses.PulseDetector` turn
blocks into per-beat arrays. Fixed blocks are what make every check give the
same result for any chunking of the same samples.
"""
