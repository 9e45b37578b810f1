"""The ``insights`` plugin for kernel: Backstage's "backend plugin with a REST endpoint" how-to (see the README).

The plugin is ``kernel_insights.plugin:plugin``; this package module stays light, because
``kernel_insights.hooks`` (a hook provider) is imported by every worker.
"""
