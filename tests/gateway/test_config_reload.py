"""The gateway's credentials follow a config reload: the supervisor pushes the new config to it."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from kernel.testing import KernelProcess, wait_for
from tests.conftest import TOKEN, base_config

NEW_TOKEN = "rotated-token-after-reload"


def test_a_reloaded_static_token_is_accepted_and_the_old_one_refused(site: Path) -> None:
    config = base_config(processes=2)  # every gateway process gets the new config
    config["backend"]["config"] = {"reload": {"enabled": True, "pollSeconds": 0.1}}
    k = KernelProcess(config, paths=[site]).start()
    try:
        with httpx.Client(base_url=k.url, timeout=10) as c:
            assert c.get("/api/echo/private/whoami", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
            assert (
                c.get("/api/echo/private/whoami", headers={"Authorization": f"Bearer {NEW_TOKEN}"}).status_code == 401
            )

            config["backend"]["auth"]["externalAccess"][0]["options"]["token"] = NEW_TOKEN
            k.config_path.write_text(yaml.safe_dump(config))

            def new_token_works() -> bool:
                # several connections, so that both gateway processes answer
                answers = []
                for _ in range(8):
                    with httpx.Client(base_url=k.url, timeout=10) as fresh:
                        answers.append(
                            fresh.get("/api/echo/private/whoami", headers={"Authorization": f"Bearer {NEW_TOKEN}"})
                        )
                return all(r.status_code == 200 for r in answers)

            wait_for(new_token_works, 10, "the gateways did not take the reloaded token", interval=0.1)
            old = c.get("/api/echo/private/whoami", headers={"Authorization": f"Bearer {TOKEN}"})
            assert old.status_code == 401
            assert c.get("/api/echo/private/whoami", headers={"Authorization": f"Bearer {NEW_TOKEN}"}).json() == {
                "type": "service",
                "subject": "external:ci-bot",
            }
    finally:
        k.stop()


def test_a_reload_that_breaks_the_settings_keeps_the_config_in_force(site: Path) -> None:
    config = base_config()
    config["backend"]["config"] = {"reload": {"enabled": True, "pollSeconds": 0.1}}
    k = KernelProcess(config, paths=[site]).start()
    try:
        broken = base_config()
        broken["backend"]["config"] = config["backend"]["config"]
        broken["backend"]["gateway"]["processes"] = 0  # invalid: refused, the old config stays
        broken["backend"]["auth"]["externalAccess"][0]["options"]["token"] = NEW_TOKEN
        k.config_path.write_text(yaml.safe_dump(broken))
        wait_for(lambda: "config reload failed" in k.output(), 10, "the broken reload was not reported")
        with httpx.Client(base_url=k.url, timeout=10) as c:
            assert c.get("/api/echo/private/whoami", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
            assert (
                c.get("/api/echo/private/whoami", headers={"Authorization": f"Bearer {NEW_TOKEN}"}).status_code == 401
            )
    finally:
        k.stop()


def test_a_reload_changing_tracing_says_it_needs_a_restart(site: Path) -> None:
    config = base_config()
    config["backend"]["config"] = {"reload": {"enabled": True, "pollSeconds": 0.1}}
    k = KernelProcess(config, paths=[site]).start(timeout=60)
    try:
        changed = base_config()
        changed["backend"]["config"] = config["backend"]["config"]
        changed["backend"]["tracing"] = {"samplerRatio": 0.5, "serviceName": "renamed"}
        k.config_path.write_text(yaml.safe_dump(changed))
        wait_for(lambda: "backend.tracing changed" in k.output(), 10, "the tracing change was not reported")
        assert "restart the kernel to apply it" in k.output()
    finally:
        k.stop()
