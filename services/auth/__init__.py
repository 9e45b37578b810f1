"""The token system: the ``auth``, ``httpAuth``, ``userInfo`` and ``pluginClient`` services, and the
gateway's verifiers of plugin and user tokens. Wire-compatible with the reference system (Backstage).

- ``tokens``: the token formats, read without crypto;
- ``keys``: a plugin's signing keys, public halves in its database;
- ``jwks``: fetching and caching published keys;
- ``verifiers``: plugin and user tokens checked against those keys;
- ``service``, ``http_auth``, ``user_info``, ``client``: the services;
- ``factories``: how they are built, and the verifiers the gateway gets.
"""
