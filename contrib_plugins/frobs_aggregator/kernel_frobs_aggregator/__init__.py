"""The ``frobs-aggregator`` plugin for kernel: the Backstage doc "Call Existing API" as a plugin (see the README).

The plugin is ``kernel_frobs_aggregator.plugin:plugin``; this package module stays light, because
``kernel_frobs_aggregator.hooks`` (a hook provider) is imported by every worker and gateway.
"""
