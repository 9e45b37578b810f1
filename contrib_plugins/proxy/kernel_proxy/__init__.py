"""The ``proxy`` plugin for kernel: ``/api/proxy/<route>`` passes requests (and WebSockets) on to upstream APIs.

The plugin is ``kernel_proxy.plugin:plugin``; the config is described in ``kernel_proxy.config``,
the extension point for endpoints in code (``proxy.endpoints``) in ``kernel_proxy.extension`` (see
the README).
"""
