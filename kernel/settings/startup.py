"""``backend.startup``: what a plugin, or a module of a plugin, that fails to start does to start-up.

A contract module: it imports the standard library and ``kernel.settings.base``.
"""

from __future__ import annotations

from typing import Literal

from kernel.settings.base import SettingsStruct

__all__ = ["BootPolicy", "ModuleStartup", "OnFailure", "PluginStartup", "Startup"]


OnFailure = Literal["abort", "continue"]


class BootPolicy(SettingsStruct, frozen=True):
    """``backend.startup.default``: what a failing plugin, or a failing module of a plugin, does to start-up."""

    #: `abort`: a plugin that fails to start stops `kernel serve`; `continue`: the others serve, readiness lists it
    on_plugin_boot_failure: OnFailure = "abort"
    #: `abort`: a module that fails to start fails its plugin; `continue`: the plugin starts without it
    on_plugin_module_boot_failure: OnFailure = "abort"


class ModuleStartup(SettingsStruct, frozen=True):
    #: this module's `onPluginModuleBootFailure`
    on_plugin_module_boot_failure: OnFailure | None = None


class PluginStartup(SettingsStruct, frozen=True):
    """``backend.startup.plugins.<pluginId>``: unset keys follow the default."""

    #: this plugin's `onPluginBootFailure`
    on_plugin_boot_failure: OnFailure | None = None
    modules: dict[str, ModuleStartup] = {}


class Startup(SettingsStruct, frozen=True):
    """``backend.startup``."""

    default: BootPolicy = BootPolicy()
    plugins: dict[str, PluginStartup] = {}
