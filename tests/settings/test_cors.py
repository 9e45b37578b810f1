"""kernel.settings.cors: ``backend.cors``, read as the ``cors`` package reads its options."""

from __future__ import annotations

from kernel.config import Config
from kernel.settings import CorsSettings, read_settings


def test_cors_reads_strings_as_lists() -> None:
    def cors_of(cors: dict[str, object]) -> CorsSettings | None:
        return read_settings(Config.from_dict({"backend": {"cors": cors}})).edge.cors

    cors = cors_of({"origin": "https://a.example", "methods": "GET, POST", "credentials": "true"})
    assert cors == CorsSettings(origin=["https://a.example"], methods=["GET", "POST"], credentials=True)
    assert cors_of({}) == CorsSettings()  # present without origin: any origin
