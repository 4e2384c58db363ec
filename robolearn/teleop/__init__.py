"""Teleoperation: one device interface, device drivers and the demo recorder.

Drivers: keyboard, gamepad, SpaceMouse, browser page, scripted expert. Hardware libraries (pygame, hidapi,
aiohttp) are imported only when their device opens.
"""
