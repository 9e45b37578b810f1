"""The ``proxy`` plugin for kernel: ``/api/proxy/<route>`` passes requests on to configured upstream APIs.

The plugin is ``kernel_proxy.plugin:plugin``; the config is described in ``kernel_proxy.config``,
the hook for endpoints in code in ``kernel_proxy.hookspecs`` (see the README).
"""
