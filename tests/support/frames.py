"""Frames built with scapy for tests, never resolved on the host's network."""

from __future__ import annotations

from scapy.layers.l2 import Ether


def eth() -> Ether:
    """An Ethernet header with both addresses given. ``Ether()`` without them makes scapy look the destination up
    when the frame is built: an ARP request or IPv6 neighbour solicitation out of the host's own interface (and a
    one-second wait each for IPv6). Tests send nothing anywhere but their own namespaces."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
