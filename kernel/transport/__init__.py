"""How kernel processes reach each other.

``endpoints`` names the sockets (the transport seam: ipc:// on one host today),
``sockets`` puts ZeroMQ sockets on the event loop, ``connection`` speaks the
wire protocol over them (decoding, bad frames, the Hello handshake).
"""
