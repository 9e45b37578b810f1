"""How kernel processes reach each other.

``endpoints`` names the sockets (the transport seam: ipc:// on one host today),
``sockets`` makes the ZeroMQ sockets, ``connection`` puts them on the event
loop speaking the wire protocol (decoding, bad frames, the Hello handshake).
"""
